"""`tabletopic audit`: prove a table holds its topic exactly once (offsets, keys, or values)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import structlog

from tabletopic import logs
from tabletopic.cli.common import (
    FORMATS,
    KAFKA,
    TABLES,
    add_command,
    add_connection_flags,
    config_path,
    connection_flags,
    load,
    schema_registry_flag,
    table_in,
    table_name,
    timestamp_ms,
)
from tabletopic.config import Config
from tabletopic.exceptions import AuditError, ConfigError

EXAMPLE = """\
  tabletopic audit --config tabletopic.yaml --topic orders --table shop.orders
  tabletopic audit --config tabletopic.yaml --topic orders --table shop.orders --values --sample 0.1

Exit 0: nothing missing or doubled; 1: a difference found; 3: the audit could not be made.
Progress: per partition, offsets read, with rate and ETA, on a terminal, else audit.progress log lines."""


def add(commands: Any) -> None:
    parser = add_command(commands, "audit", "prove a table holds its topic exactly once", EXAMPLE)
    add_connection_flags(parser)
    parser.add_argument("--topic", required=True, help="the topic the table was written from")
    parser.add_argument("--table", required=True, type=table_name, help="the table, NAMESPACE.TABLE")
    parser.add_argument("--from-timestamp", help="ISO-8601: audit only records from here on (a backfilled range)")
    parser.add_argument("--values", action="store_true",
                        help="also decode each record again, record by record, and compare it with its row")
    parser.add_argument("--sample", type=float,
                        help="with --values: compare this share of the records (0-1], the same ones on every run "
                             "(default: all)")
    parser.add_argument("--format", choices=FORMATS,
                        help="with --values: the table's format (default: the table's entry in --config)")
    parser.add_argument("--schema-registry", help="with --values on an Avro table: Schema Registry URL")
    parser.set_defaults(handler=command)


def command(args: argparse.Namespace, argv: list[str]) -> int:
    from tabletopic.audit import audit, format_report
    from tabletopic.catalog.loader import open_catalog
    from tabletopic.observe.progress import progress

    if args.sample is not None and not args.values:
        raise ConfigError("--sample", "goes with --values")
    flags = connection_flags(args)
    schema_registry_flag(flags, args)
    listed = _listed_table(args, flags) if args.values else None
    # The offset audit reads the table as it is: the format only satisfies validation.
    flags.table({"table": args.table, "topic": args.topic, "format": args.format or "raw"},
                {"table": "--table", "topic": "--topic", "format": "--format"})
    config = load(args, flags, needs={KAFKA, TABLES})  # --values checks the registry itself
    # A terminal shows the report and the progress bar only; a log (not a terminal) gets audit.progress lines too.
    logs.configure("warning" if sys.stderr.isatty() else config.log_level, secrets=config.secret_values)
    upsert_exit = _audit_upsert(args, config)
    if upsert_exit is not None:
        return upsert_exit
    values_spec = _values_spec(args, listed) if args.values else None
    starts = None
    if args.from_timestamp:
        from tabletopic.kafka.reader import log_bounds, offsets_at

        partitions = sorted(log_bounds(config.kafka, args.topic))
        starts = offsets_at(config.kafka, args.topic, partitions, timestamp_ms("--from-timestamp", args.from_timestamp))
    try:
        with progress("audit.progress", {}, unit="offsets", table=args.table, audit="offsets") as shown:
            reports = audit(open_catalog(config.catalog), args.table, args.topic, config.group_id, config.kafka,
                            starts, on_progress=shown.report)
    except AuditError as exc:
        return _audit_failed(exc)
    for line in format_report(reports):
        print(line)
    ok = all(r.ok for r in reports)
    if values_spec is not None:
        fmt, lowercase = values_spec
        renames = listed.rename_columns if listed is not None else {}
        ok = _audit_values(args, config, reports, fmt, lowercase, renames) and ok
    done = "audit: OK, nothing missing, nothing duplicated" + (", values equal" if args.values else "")
    print(done if ok else "audit: FAILED")
    return 0 if ok else 1


def _audit_failed(exc: AuditError) -> int:
    """Exit 3: the audit could not be made (not: it found a difference)."""
    structlog.get_logger().error("audit.failed", error=str(exc))
    print(f"tabletopic audit: {exc}", file=sys.stderr)
    return 3


def _audit_upsert(args: argparse.Namespace, config: Config) -> int | None:
    """The key audit when the table is an upsert table (its properties say so); None otherwise."""
    from tabletopic.audit_keys import audit_keys, format_keys
    from tabletopic.catalog.loader import open_catalog
    from tabletopic.catalog.tables import load_if_exists
    from tabletopic.core.upsert_mode import upsert_mode
    from tabletopic.kafka.registry import SchemaRegistry
    from tabletopic.observe.progress import progress

    catalog = open_catalog(config.catalog)
    table = load_if_exists(catalog, args.table)
    if table is None or upsert_mode(table.properties) is None:
        return None
    if args.values or args.from_timestamp:
        raise ConfigError("--values" if args.values else "--from-timestamp",
                          "is not for an upsert table: its audit compares every key with the topic")
    registry = config.schema_registry
    client = SchemaRegistry(registry.url, registry.properties) if registry.url else None
    try:
        with progress("audit.progress", {}, unit="offsets", table=args.table, audit="keys") as shown:
            report = audit_keys(catalog, args.table, args.topic, config.group_id, config.kafka, client,
                                on_progress=shown.report)
    except AuditError as exc:
        return _audit_failed(exc)
    for line in format_keys(report):
        print(line)
    print("audit: OK, every key holds its latest value" if report.ok else "audit: FAILED")
    return 0 if report.ok else 1


def _listed_table(args: argparse.Namespace, flags: Any) -> Any:
    """The config file's entry for the table, if the file lists it."""
    if config_path(args) is None:
        return None
    try:
        config = load(args, flags, needs={KAFKA})
    except ConfigError:
        return None
    return table_in(config, args.table)


def _values_spec(args: argparse.Namespace, listed: Any) -> tuple[str, bool]:
    """The table's format and whether its column names are folded to lower case, for --values."""
    if args.sample is not None and not 0 < args.sample <= 1:
        raise ConfigError("--sample", f"must be above 0 and at most 1 (is {args.sample})")
    if args.format is not None:
        return args.format, listed is not None and listed.column_names == "lowercase"
    if listed is None:
        raise ConfigError("--format", "--values needs the table's format: list the table in --config or pass --format")
    from tabletopic.audit_reference import JSON_SCHEMA

    return (JSON_SCHEMA if listed.json_schema else str(listed.format)), listed.column_names == "lowercase"


def _audit_values(args: argparse.Namespace, config: Config, reports: Any, fmt: str, lowercase: bool,
                  renames: dict[str, str] | None = None) -> bool:
    from tabletopic.audit_reference import JSON_SCHEMA
    from tabletopic.audit_values import audit_values, format_values
    from tabletopic.catalog.loader import open_catalog
    from tabletopic.decode.avro import WriterSchemas
    from tabletopic.kafka.registry import SchemaRegistry
    from tabletopic.observe.progress import progress

    writer_schemas = None
    if fmt in ("avro", "protobuf", JSON_SCHEMA):
        registry = config.schema_registry
        if not registry.url:
            raise ConfigError("--schema-registry", f"--values on a {fmt} table needs the Schema Registry")
        writer_schemas = WriterSchemas(SchemaRegistry(registry.url, registry.properties))
    ranges = {r.partition: (r.log_start, r.committed) for r in reports if r.committed is not None}
    with progress("audit.progress", {}, unit="offsets", table=args.table, audit="values") as shown:
        report = audit_values(open_catalog(config.catalog), args.table, args.topic, config.kafka, fmt, ranges,
                              args.sample or 1.0, lowercase, writer_schemas, renames, on_progress=shown.report)
    for line in format_values(report):
        print(line)
    return report.ok
