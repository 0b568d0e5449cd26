"""The `tabletopic` command: run, backfill, audit, status, dlq replay, offsets show/reset, compact, maintain,
quickstart."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

import structlog

from tabletopic import logs
from tabletopic.config import Config, default_workers, load_config
from tabletopic.core.exits import ExitCode
from tabletopic.exceptions import AuditError, ConfigError

DEFAULT_TARGET_FILE_BYTES = 512 * 1024 * 1024


def _connection_flags(args: argparse.Namespace) -> dict[str, Any]:
    """Broker, group and catalog flags as config data (flags win over file and environment)."""
    flags: dict[str, Any] = {}
    if args.bootstrap_servers:
        flags["kafka"] = {"bootstrap.servers": args.bootstrap_servers}
    if args.group_id:
        flags["group_id"] = args.group_id
    catalog: dict[str, Any] = {}
    if args.catalog_uri:
        catalog["uri"] = args.catalog_uri
    if args.warehouse:
        catalog["warehouse"] = args.warehouse
    if catalog:
        flags["catalog"] = catalog
    return flags


def _run_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The flags-only form of `run`, as config data."""
    flags = _connection_flags(args)
    if args.schema_registry:
        flags["schema_registry"] = {"url": args.schema_registry}
    if args.workers is not None:
        if args.workers < 1:
            raise ConfigError("--workers", "must be 1 or more")
        flags["workers"] = args.workers
    if args.commit_interval is not None:
        flags["commit"] = {"interval_seconds": args.commit_interval}
    if args.topic or args.table:
        if not (args.topic and args.table):
            raise ConfigError("--table" if args.topic else "--topic", "required together with " +
                              ("--topic" if args.topic else "--table"))
        table: dict[str, Any] = {"table": args.table, "topic": args.topic, "format": args.format}
        if args.partition_by:
            table["partition_by"] = args.partition_by
        flags["tables"] = [table]
    return flags


def _add_connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config file (see README: Configuration)")
    parser.add_argument("--bootstrap-servers", help="Kafka bootstrap servers, HOST:PORT[,HOST:PORT]")
    parser.add_argument("--catalog-uri", help="pyiceberg catalog uri (default: embedded SQLite in the warehouse)")
    parser.add_argument("--warehouse", help="warehouse folder or s3://bucket/prefix (default: ./warehouse)")
    parser.add_argument("--group-id", help="consumer group; also names the offsets key in snapshots")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tabletopic", description="Kafka topics into Iceberg tables, exactly once.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="consume topics and commit them to tables")
    _add_connection_flags(run)
    run.add_argument("--topic", help="one topic to read (flags-only form)")
    run.add_argument("--table", help="its table, NAMESPACE.TABLE (flags-only form)")
    run.add_argument("--format", choices=("json", "avro", "raw"), default="json")
    run.add_argument("--schema-registry", help="Schema Registry URL (format avro)")
    run.add_argument("--partition-by", action="append", help="partition expression, e.g. 'day(_kafka_timestamp)'")
    run.add_argument("--commit-interval", type=float, help="seconds between commits (default 30)")
    run.add_argument("--workers", type=int,
                     help="worker processes in the group (default: config, else the CPUs it may use)")

    audit = commands.add_parser("audit", help="prove a table holds its topic exactly once")
    _add_connection_flags(audit)
    audit.add_argument("--topic", required=True)
    audit.add_argument("--table", required=True)
    audit.add_argument("--from-timestamp", help="ISO-8601: audit only records from here on (a backfilled range)")
    audit.add_argument("--values", action="store_true",
                       help="also decode each record again, record by record, and compare it with its row")
    audit.add_argument("--sample", type=float,
                       help="with --values: compare this share of the records (0-1], the same ones on every run")
    audit.add_argument("--format", choices=("json", "avro", "raw"),
                       help="with --values: the table's format (default: the table's entry in --config)")
    audit.add_argument("--schema-registry", help="with --values on an Avro table: Schema Registry URL")

    dlq = commands.add_parser("dlq", help="dead letters: replay them after a fix")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True)
    replay = dlq_commands.add_parser("replay", help="decode a table's dead letters again; move those that now fit")
    _add_connection_flags(replay)
    replay.add_argument("--table", required=True, help="the table (as in the config's tables), NAMESPACE.TABLE")
    replay.add_argument("--reason", help="only dead letters with this reason code, e.g. unknown_schema_id")
    replay.add_argument("--dry-run", action="store_true", help="decode and count, change nothing")

    compact = commands.add_parser("compact", help="rewrite a table's small files into bigger ones, once")
    _add_connection_flags(compact)
    compact.add_argument("--table", required=True, help="NAMESPACE.TABLE")
    compact.add_argument("--target-file-size", type=int, default=DEFAULT_TARGET_FILE_BYTES,
                         help=f"bytes per rewritten file (default {DEFAULT_TARGET_FILE_BYTES})")
    compact.add_argument("--min-files", type=int, default=2, help="fewest small files worth one rewrite")

    maintain = commands.add_parser("maintain", help="compact, expire snapshots, remove orphan files, once")
    _add_connection_flags(maintain)
    maintain.add_argument("--table", required=True, help="NAMESPACE.TABLE")
    maintain.add_argument("--target-file-size", type=int, default=DEFAULT_TARGET_FILE_BYTES)
    maintain.add_argument("--min-files", type=int, default=2)
    maintain.add_argument("--expire-older-than-hours", type=float, default=24.0,
                          help="expire snapshots older than this (never the chain recovery needs)")
    maintain.add_argument("--keep-snapshots", type=int, default=20, help="newest snapshots always kept")
    maintain.add_argument("--max-manifests", type=int, default=100, help="merge the manifests from this many")
    maintain.add_argument("--orphans-older-than-hours", type=float, default=24.0,
                          help="safety age: a younger unreferenced file may belong to a commit in flight")
    maintain.add_argument("--dry-run", action="store_true", help="list orphan files, change nothing")

    offsets = commands.add_parser("offsets", help="where a table stands in its topics; move it")
    offsets_commands = offsets.add_subparsers(dest="offsets_command", required=True)
    show = offsets_commands.add_parser("show", help="committed offset, log start and end, lag per partition")
    _add_connection_flags(show)
    show.add_argument("--table", required=True, help="the table (as in the config's tables)")
    show.add_argument("--output", choices=("text", "json"), default="text")
    reset = offsets_commands.add_parser("reset", help="set a table's offsets (recorded in its history)")
    _add_connection_flags(reset)
    reset.add_argument("--table", required=True, help="the table (as in the config's tables)")
    reset.add_argument("--topic", help="which of the table's topics (needed when it reads several)")
    reset.add_argument("--partitions", help="comma-separated partitions (default: all)")
    to = reset.add_mutually_exclusive_group(required=True)
    to.add_argument("--to-earliest", action="store_true")
    to.add_argument("--to-latest", action="store_true")
    to.add_argument("--to-offset", type=int)
    to.add_argument("--to-timestamp", help="ISO-8601, e.g. 2026-11-27T10:00:00Z")
    reset.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")

    backfill = commands.add_parser("backfill", help="read a range of a topic into a table, exactly once, resumable")
    _add_connection_flags(backfill)
    backfill.add_argument("--topic", required=True)
    backfill.add_argument("--table", required=True, help="NAMESPACE.TABLE: its settings (format, partitioning) apply")
    backfill.add_argument("--into", help="a new table to fill instead (a rebuilt projection)")
    start = backfill.add_mutually_exclusive_group(required=True)
    start.add_argument("--from-offset", type=int)
    start.add_argument("--from-timestamp", help="ISO-8601")
    start.add_argument("--partitions", help="PARTITION:OFFSET,… — only these partitions, from these offsets")
    stop = backfill.add_mutually_exclusive_group()
    stop.add_argument("--to-offset", type=int, help="stop before this offset (default: the log end now)")
    stop.add_argument("--to-timestamp", help="ISO-8601: stop before the first record at or after it")
    backfill.add_argument("--dry-run", action="store_true", help="print the plan, read nothing")
    backfill.add_argument("--workers", type=int, default=1, help="processes, each reading a share of the partitions")
    backfill.add_argument("--partition-ends", help=argparse.SUPPRESS)  # PARTITION:OFFSET,… from a parent's plan

    rebuild = commands.add_parser(
        "rebuild", help="a new version of a table built from the log beside the live one, then cut over")
    _add_connection_flags(rebuild)
    rebuild.add_argument("--table", required=True, help="NAMESPACE.TABLE; the config gives the new version's settings")
    since = rebuild.add_mutually_exclusive_group()
    since.add_argument("--from-earliest", action="store_true", help="from the log's start (the default)")
    since.add_argument("--from-timestamp", help="ISO-8601: from the first record at or after it")
    rebuild.add_argument("--max-records-per-second", type=float,
                         help="read no faster (default: no limit), to leave the live writer its share of the machine")
    rebuild.add_argument("--freeze-seconds", type=float, default=120.0,
                         help="how long a cutover may hold the live writer's commits before it lets go (default 120)")
    rebuild.add_argument("--no-cutover", action="store_true", help="build and catch up, leave the live table as it is")
    rebuild.add_argument("--seed-from-table", action="store_true",
                         help="the live table's rows below the log start (lost to retention) re-projected into the "
                              "new version; the log supplies the rest")
    rebuild.add_argument("--metrics-port", type=int, help="serve the rebuild's progress as Prometheus metrics here")
    act = rebuild.add_mutually_exclusive_group()
    act.add_argument("--rollback", action="store_true",
                     help="swap back to NS.T__previous (the config must be the one it was written under)")
    act.add_argument("--drop-previous", action="store_true", help="drop NS.T__previous and its dead letters")
    act.add_argument("--abandon", action="store_true", help="drop an unfinished NS.T__rebuild")
    act.add_argument("--show", action="store_true", help="print the settings the table records from its rebuild")

    status = commands.add_parser("status", help="per table: lag, freshness, last commit, snapshots, small files")
    _add_connection_flags(status)
    status.add_argument("--output", choices=("text", "json"), default="text")

    quickstart = commands.add_parser("quickstart", help="local broker + sample events + writer + rows")
    quickstart.add_argument("--records", type=int, default=10_000)
    quickstart.add_argument("--warehouse", default="warehouse")
    return parser


# polars-avro's native allocator (jemalloc) keeps freed pages for 10 s by default; a writer decoding
# batch after batch then holds far more than its buffers. Set before the library loads.
_NATIVE_ALLOCATOR = ("_RJEM_MALLOC_CONF", "dirty_decay_ms:1000,muzzy_decay_ms:1000")


def main(argv: Sequence[str] | None = None) -> int:
    os.umask(0o077)  # the catalog database, the local warehouse, metrics files: this user's alone
    os.environ.setdefault(*_NATIVE_ALLOCATOR)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            from tabletopic.observe import multiproc

            metrics_dir = multiproc.prepare()  # before anything imports prometheus_client
            try:
                return _run_command(args, argv)
            finally:
                multiproc.remove(metrics_dir)
        if args.command == "audit":
            return _audit(args)
        if args.command == "dlq":
            return _replay(args)
        if args.command == "offsets":
            return _offsets(args)
        if args.command == "status":
            return _status(args)
        if args.command == "backfill":
            return _backfill(args, argv)
        if args.command == "rebuild":
            return _rebuild(args)
        if args.command == "compact":
            return _compact(args)
        if args.command == "maintain":
            return _maintain(args)
        if args.command == "quickstart":
            from tabletopic.local_services import local_services_missing

            if (missing := local_services_missing("quickstart")) is not None:
                print(f"tabletopic: {missing}", file=sys.stderr)
                return ExitCode.CONFIG
            logs.configure("info")
            from tabletopic.quickstart import quickstart

            return quickstart(args.records, args.warehouse)
    except ConfigError as exc:
        print(f"tabletopic: {logs.masked(str(exc))}", file=sys.stderr)
        return ExitCode.CONFIG
    raise AssertionError(args.command)


def _run_command(args: argparse.Namespace, argv: list[str]) -> int:
    """The pool's parent (or the one worker) serves HTTP and runs maintenance; workers only write."""
    config = load_config(args.config or os.environ.get("TABLETOPIC_CONFIG"), _run_flags(args))
    logs.configure(config.log_level, secrets=config.secret_values)
    workers = config.workers or default_workers()
    server = None
    if config.http.enabled:
        from tabletopic.observe.http import serve

        server = serve(config, expected_workers=workers)
    maintenance = _start_maintenance(config)
    try:
        if workers > 1:
            from tabletopic.supervisor import Supervisor

            worker_argv = [*argv, "--workers", "1"]  # the last --workers wins
            return Supervisor(worker_argv, workers, config.shutdown_timeout_seconds).run()
        return _run(config)
    finally:
        if maintenance is not None:
            maintenance.stop()
        if server is not None:
            server.shutdown()


def _start_maintenance(config: Config) -> Any:
    if not config.maintenance.enabled:
        return None
    from tabletopic.compaction.scheduler import MaintenanceProcess

    return MaintenanceProcess(config).start()


def _run(config: Config) -> int:
    from tabletopic.service import Service
    from tabletopic.supervisor import stop_with_supervisor

    service = Service(config)
    service.install_signal_handlers()
    stop_with_supervisor()
    return service.run()


def _audit(args: argparse.Namespace) -> int:
    from tabletopic.audit import audit, format_report
    from tabletopic.catalog.loader import open_catalog

    flags = _connection_flags(args)
    if args.schema_registry:
        flags["schema_registry"] = {"url": args.schema_registry}
    path = args.config or os.environ.get("TABLETOPIC_CONFIG")
    if args.sample is not None and not args.values:
        raise ConfigError("--sample", "goes with --values")
    listed = _listed_table(path, flags, args.table) if args.values else None
    # The offset audit reads the table as it is: the format only satisfies validation.
    flags["tables"] = [{"table": args.table, "topic": args.topic, "format": args.format or "raw"}]
    config = load_config(path, flags)
    logs.configure("warning", secrets=config.secret_values)
    upsert_exit = _audit_upsert(args, config)
    if upsert_exit is not None:
        return upsert_exit
    values_spec = _values_spec(args, listed) if args.values else None
    starts = None
    if args.from_timestamp:
        from tabletopic.kafka.reader import log_bounds, offsets_at

        partitions = sorted(log_bounds(config.kafka, args.topic))
        moment = _timestamp_ms("--from-timestamp", args.from_timestamp)
        starts = offsets_at(config.kafka, args.topic, partitions, moment)
    try:
        reports = audit(open_catalog(config.catalog), args.table, args.topic, config.group_id, config.kafka, starts)
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
        report = audit_keys(catalog, args.table, args.topic, config.group_id, config.kafka, client)
    except AuditError as exc:
        return _audit_failed(exc)
    for line in format_keys(report):
        print(line)
    print("audit: OK, every key holds its latest value" if report.ok else "audit: FAILED")
    return 0 if report.ok else 1


def _listed_table(path: str | None, flags: dict[str, Any], table: str) -> Any:
    """The config file's entry for `table`, if the file lists it."""
    if path is None:
        return None
    try:
        config = load_config(path, flags)
    except ConfigError:
        return None
    return next((spec for spec in config.tables if spec.table == table), None)


def _values_spec(args: argparse.Namespace, listed: Any) -> tuple[str, bool]:
    """The table's format and whether its column names are folded to lower case, for --values."""
    if args.sample is not None and not 0 < args.sample <= 1:
        raise ConfigError("--sample", f"must be above 0 and at most 1 (is {args.sample})")
    if args.format is not None:
        return args.format, listed is not None and listed.column_names == "lowercase"
    if listed is None:
        raise ConfigError("--format", "--values needs the table's format: list the table in --config or pass --format")
    return listed.format, listed.column_names == "lowercase"


def _audit_values(args: argparse.Namespace, config: Config, reports: Any, fmt: str, lowercase: bool,
                  renames: dict[str, str] | None = None) -> bool:
    from tabletopic.audit_values import audit_values, format_values
    from tabletopic.catalog.loader import open_catalog
    from tabletopic.decode.avro import WriterSchemas
    from tabletopic.kafka.registry import SchemaRegistry

    writer_schemas = None
    if fmt == "avro":
        registry = config.schema_registry
        if not registry.url:
            raise ConfigError("--schema-registry", "--values on an Avro table needs the Schema Registry")
        writer_schemas = WriterSchemas(SchemaRegistry(registry.url, registry.properties))
    ranges = {r.partition: (r.log_start, r.committed) for r in reports if r.committed is not None}
    report = audit_values(open_catalog(config.catalog), args.table, args.topic, config.kafka, fmt, ranges,
                          args.sample or 1.0, lowercase, writer_schemas, renames)
    for line in format_values(report):
        print(line)
    return report.ok


def _replay(args: argparse.Namespace) -> int:
    from tabletopic.catalog.loader import open_catalog
    from tabletopic.core.reasons import Reason
    from tabletopic.decode.avro import WriterSchemas
    from tabletopic.kafka.registry import SchemaRegistry
    from tabletopic.replay import replay

    config = load_config(args.config or os.environ.get("TABLETOPIC_CONFIG"), _connection_flags(args))
    logs.configure(config.log_level, secrets=config.secret_values)
    specs = [t for t in config.tables if t.table == args.table]
    if not specs:
        raise ConfigError("--table", f"{args.table} is not one of the config's tables")
    if args.reason is not None and args.reason not in {str(r) for r in Reason}:
        raise ConfigError("--reason", f"unknown reason code {args.reason!r}; one of {', '.join(map(str, Reason))}")
    registry = config.schema_registry
    writer_schemas = WriterSchemas(SchemaRegistry(registry.url, registry.properties)) if registry.url else None
    if specs[0].is_upsert:
        # A dead letter is an older change of its key: applied now, it could overwrite a newer value or bring
        # back a deleted key. Applying only the ones still latest per key needs the topic read: not yet.
        raise ConfigError("--table", f"{args.table} is an upsert table, whose dead letters cannot be replayed yet: "
                                     "produce a fixed record under its key again (the latest change wins)")
    report = replay(open_catalog(config.catalog), specs[0], config.group_id, writer_schemas, args.reason,
                    args.dry_run)
    verb = "would replay" if args.dry_run else "replayed"
    print(f"dead letters chosen: {report.chosen}, {verb}: {report.replayed} (appended {report.appended}), "
          f"still bad: {report.still_bad}, refused: {report.foreign} from topics the table does not read, "
          f"{report.unrestorable} kept only in part")
    return 0


def _maintenance_catalog(args: argparse.Namespace) -> Any:
    from tabletopic.catalog.loader import open_catalog

    if args.target_file_size <= 0 or args.min_files < 2:
        raise ConfigError("--target-file-size" if args.target_file_size <= 0 else "--min-files",
                          "must be above 0" if args.target_file_size <= 0 else "must be 2 or more")
    flags = _connection_flags(args)
    flags["tables"] = [{"table": args.table, "topic": "-", "format": "raw"}]  # validation only
    config = load_config(args.config or os.environ.get("TABLETOPIC_CONFIG"), flags)
    logs.configure(config.log_level, secrets=config.secret_values)
    from tabletopic.compaction.scheduler import NICENESS

    os.nice(NICENESS)  # beside the writers: never starve them of CPU
    return open_catalog(config.catalog)


def _compact(args: argparse.Namespace) -> int:
    from tabletopic.compaction.rewrite import compact

    result = compact(_maintenance_catalog(args), args.table, args.target_file_size, args.min_files)
    print(f"compacted {args.table}: {result.files_removed} files into {result.files_added} "
          f"({result.rows} rows, {result.attempts} attempts{', abandoned' if result.abandoned else ''})")
    return 0 if not result.abandoned else 1


def _maintain(args: argparse.Namespace) -> int:
    import time

    from tabletopic.compaction.expire import expire
    from tabletopic.compaction.manifests import merge_manifests
    from tabletopic.compaction.orphans import remove_orphans
    from tabletopic.compaction.rewrite import compact

    catalog = _maintenance_catalog(args)
    now_ms = int(time.time() * 1000)
    if not args.dry_run:
        result = compact(catalog, args.table, args.target_file_size, args.min_files)
        print(f"compacted: {result.files_removed} files into {result.files_added}")
        print(f"manifests merged: {merge_manifests(catalog, args.table, max(2, args.max_manifests))}")
        expired = expire(catalog, args.table, now_ms - int(args.expire_older_than_hours * 3_600_000),
                         args.keep_snapshots)
        print(f"expired: {expired.expired} snapshots, {expired.files_deleted} files deleted")
    orphans = remove_orphans(catalog, args.table, now_ms - int(args.orphans_older_than_hours * 3_600_000),
                             args.dry_run)
    for path in orphans:
        print(f"orphan: {path}")
    print(f"orphans: {len(orphans)} {'found (dry run)' if args.dry_run else 'removed'}")
    return 0


def _offsets(args: argparse.Namespace) -> int:
    import json

    from tabletopic.catalog.loader import open_catalog
    from tabletopic.catalog.tables import load_if_exists
    from tabletopic.deadletter.rows import dlq_identifier
    from tabletopic.kafka.consumer import topic_ids
    from tabletopic.offsets_admin import positions, reset, reset_targets

    config = load_config(args.config or os.environ.get("TABLETOPIC_CONFIG"), _connection_flags(args))
    logs.configure("warning", secrets=config.secret_values)
    specs = [t for t in config.tables if t.table == args.table]
    if not specs:
        raise ConfigError("--table", f"{args.table} is not one of the config's tables")
    catalog = open_catalog(config.catalog)
    if args.offsets_command == "show":
        rows = positions(catalog, args.table, config.group_id, config.kafka, specs[0].all_topics)
        if args.output == "json":
            print(json.dumps([{"topic": r.topic, "partition": r.partition, "committed": r.committed,
                               "log_start": r.log_start, "log_end": r.log_end, "lag": r.lag, "problem": r.problem}
                              for r in rows]))
            return 0
        print(f"{'topic':<30} {'partition':>9} {'committed':>10} {'log_start':>10} {'log_end':>10} {'lag':>8}  status")
        for r in rows:
            committed = "-" if r.committed is None else str(r.committed)
            lag = "-" if r.lag is None else str(r.lag)
            print(f"{r.topic:<30} {r.partition:>9} {committed:>10} {r.log_start:>10} {r.log_end:>10} {lag:>8}  "
                  f"{r.problem or 'ok'}")
        return 0
    topics = specs[0].all_topics
    topic = args.topic or (topics[0] if len(topics) == 1 else None)
    if topic is None or topic not in topics:
        raise ConfigError("--topic", f"one of {topics}")
    rows = positions(catalog, args.table, config.group_id, config.kafka, [topic])
    partitions = sorted(int(p) for p in args.partitions.split(",")) if args.partitions else [r.partition for r in rows]
    if args.to_timestamp:
        moment_ms = _timestamp_ms("--to-timestamp", args.to_timestamp)
        targets = reset_targets(config.kafka, topic, partitions, "timestamp", moment_ms)
    elif args.to_offset is not None:
        targets = reset_targets(config.kafka, topic, partitions, "offset", args.to_offset)
    else:
        targets = reset_targets(config.kafka, topic, partitions, "earliest" if args.to_earliest else "latest")
    current = {(r.topic, r.partition): r.committed for r in rows}
    for (t, p), n in sorted(targets.items()):
        print(f"{t}/{p}: {current.get((t, p))} -> {n}")
    if args.dry_run:
        print("dry run: nothing changed")
        return 0
    reset(catalog, args.table, config.group_id, targets, topic_ids(config.kafka, [topic]))
    # The dead-letter table trims letters below its own offsets: left ahead, it would drop the bad
    # records of the range read again (or of a recreated topic's new log).
    dead_letters = dlq_identifier(args.table)
    if load_if_exists(catalog, dead_letters) is not None:
        reset(catalog, dead_letters, config.group_id, targets)
    print(f"offsets of {args.table} reset (recorded in its history as tabletopic.offsets-reset)")
    return 0


def _status(args: argparse.Namespace) -> int:
    import json

    from tabletopic.catalog.loader import open_catalog
    from tabletopic.status import statuses as table_statuses

    config = load_config(args.config or os.environ.get("TABLETOPIC_CONFIG"), _connection_flags(args))
    logs.configure("warning", secrets=config.secret_values)
    catalog = open_catalog(config.catalog)
    statuses = table_statuses(catalog, config)
    if args.output == "json":
        print(json.dumps([s.as_dict() for s in statuses]))
        return 0
    columns = ("table", "lag", "partitions_invalid", "last_commit_age_s", "newest_record_age_s", "snapshots",
               "data_files", "small_files")
    print("  ".join(columns))
    for s in statuses:
        values = s.as_dict()
        print("  ".join("-" if values[c] is None else str(values[c]) for c in columns))
    return 0


def _timestamp_ms(flag: str, text: str) -> int:
    import datetime as dt

    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(flag, str(exc)) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


def _rebuild(args: argparse.Namespace) -> int:
    from tabletopic.catalog.loader import open_catalog
    from tabletopic.rebuild import manage
    from tabletopic.rebuild.cutover import SwapRefused
    from tabletopic.rebuild.run import RebuildRequest, rebuild

    config = load_config(args.config or os.environ.get("TABLETOPIC_CONFIG"), _connection_flags(args))
    logs.configure(config.log_level, secrets=config.secret_values)
    catalog = open_catalog(config.catalog)
    try:
        if args.rollback:
            done = manage.rollback(catalog, config, args.table, args.freeze_seconds)
        elif args.drop_previous:
            done = manage.drop_previous(catalog, args.table)
        elif args.abandon:
            done = manage.abandon(catalog, args.table)
        elif args.show:
            done = manage.show(catalog, args.table)
        else:
            if args.metrics_port is not None:
                from prometheus_client import start_http_server

                start_http_server(args.metrics_port, addr="127.0.0.1")
            registry = config.schema_registry
            writer_schemas = None
            if registry.url:
                from tabletopic.decode.avro import WriterSchemas
                from tabletopic.kafka.registry import SchemaRegistry

                writer_schemas = WriterSchemas(SchemaRegistry(registry.url, registry.properties))
            request = RebuildRequest(
                args.table,
                _timestamp_ms("--from-timestamp", args.from_timestamp) if args.from_timestamp else None,
                args.max_records_per_second, args.freeze_seconds, cutover=not args.no_cutover,
                seed_from_table=args.seed_from_table)
            done = rebuild(catalog, config, request, writer_schemas)
    except SwapRefused as exc:
        print(f"tabletopic rebuild: refused: {exc}", file=sys.stderr)
        return 1
    print(done)
    return 0


def _backfill(args: argparse.Namespace, argv: list[str]) -> int:
    from tabletopic.backfill import RefusedRange, backfill_target, plan_backfill, run_backfill
    from tabletopic.catalog.loader import open_catalog
    from tabletopic.kafka.reader import log_bounds, offsets_at
    from tabletopic.supervisor import stop_with_supervisor

    stop_with_supervisor()  # a worker of a parallel backfill: stop when its parent dies, even by kill -9
    config = load_config(args.config or os.environ.get("TABLETOPIC_CONFIG"), _connection_flags(args))
    logs.configure(config.log_level, secrets=config.secret_values)
    target = backfill_target(config, args.topic, args.table, args.into)
    spec = target.spec
    if target.live and spec.is_upsert:
        raise ConfigError("--into", f"{args.table} is a live upsert table: a backfill would apply older changes "
                                    "over newer ones. Backfill --into a new table (then it is a rebuild)")
    bounds = log_bounds(config.kafka, args.topic)
    if not bounds:
        raise ConfigError("--topic", f"topic {args.topic!r} not found")
    if args.partitions:
        try:
            starts = {int(p): int(o) for p, o in (item.split(":") for item in args.partitions.split(","))}
        except ValueError:
            raise ConfigError("--partitions", "expected PARTITION:OFFSET,…, e.g. 0:1200,1:980") from None
    elif args.from_timestamp:
        starts = offsets_at(config.kafka, args.topic, sorted(bounds), _timestamp_ms("--from-timestamp",
                                                                                    args.from_timestamp))
    else:
        starts = dict.fromkeys(bounds, args.from_offset)
    unknown = sorted(set(starts) - set(bounds))
    if unknown:
        raise ConfigError("--partitions", f"topic {args.topic!r} has no partition {unknown}")
    starts = {p: max(o, bounds[p][0]) for p, o in starts.items()}
    if args.partition_ends:
        ends = {int(p): int(o) for p, o in (item.split(":") for item in args.partition_ends.split(","))}
    elif args.to_timestamp:
        ends = offsets_at(config.kafka, args.topic, sorted(starts), _timestamp_ms("--to-timestamp", args.to_timestamp))
    else:
        ends = {p: bounds[p][1] if args.to_offset is None else min(args.to_offset, bounds[p][1]) for p in starts}
    catalog = open_catalog(config.catalog)
    try:
        plan = plan_backfill(catalog, config, args.topic, target, starts, ends)
    except RefusedRange as exc:
        print(f"tabletopic backfill: refused: {exc}", file=sys.stderr)
        return 1
    for line in plan.lines():
        print(line)
    if args.dry_run:
        return 0
    if args.workers > 1 and len(plan.partitions) > 1:
        return _backfill_in_parallel(args, argv, plan)
    read = run_backfill(catalog, config, target, plan, plain_progress=bool(args.partition_ends))
    print(f"backfill done: {read} records into {spec.table}")
    return 0


def _backfill_in_parallel(args: argparse.Namespace, argv: list[str], plan: Any) -> int:
    """One child per share of the partitions, each a backfill of its own (the same offsets key: they
    never share a partition); the parent waits and exits with the worst code."""
    import subprocess

    from tabletopic.supervisor import SUPERVISOR_PID_ENV

    shares = [plan.partitions[i::args.workers] for i in range(args.workers)]
    base = [a for a in argv if a != "--dry-run"]
    children = []
    for share in shares:
        if not share:
            continue
        starts = ",".join(f"{p.partition}:{p.start}" for p in share)
        ends = ",".join(f"{p.partition}:{p.end}" for p in share)
        argv = [*_without_range_flags(base), "--partitions", starts, "--partition-ends", ends, "--workers", "1"]
        env = {**os.environ, SUPERVISOR_PID_ENV: str(os.getpid())}  # a child dies with this parent
        children.append(subprocess.Popen([sys.executable, "-m", "tabletopic", *argv], env=env))
    codes = [child.wait() for child in children]
    return max(codes, default=0)


def _without_range_flags(argv: list[str]) -> list[str]:
    dropped = {"--from-offset", "--from-timestamp", "--partitions", "--to-offset", "--to-timestamp", "--workers",
               "--partition-ends"}
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in dropped:
            skip = "=" not in arg
            continue
        kept.append(arg)
    return kept
