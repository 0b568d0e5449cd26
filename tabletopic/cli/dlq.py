"""`tabletopic dlq replay`: decode a table's dead letters again after a fix; move those that now fit."""

from __future__ import annotations

import argparse
from typing import Any

from tabletopic import logs
from tabletopic.cli.common import (
    REGISTRY,
    TABLES,
    add_command,
    add_connection_flags,
    connection_flags,
    load,
    table_in,
    table_name,
)
from tabletopic.exceptions import ConfigError

EXAMPLE = """\
  tabletopic dlq replay --config tabletopic.yaml --table shop.orders --dry-run
  tabletopic dlq replay --config tabletopic.yaml --table shop.orders --reason unknown_schema_id

Progress: dead letters decoded, with rate and ETA, on a terminal, else replay.progress log lines."""


def add(commands: Any) -> None:
    parser = add_command(commands, "dlq", "dead letters: replay them after a fix", EXAMPLE)
    subcommands = parser.add_subparsers(dest="dlq_command", required=True, metavar="{replay}")
    replay = add_command(subcommands, "replay", "decode a table's dead letters again; move those that now fit",
                         EXAMPLE)
    add_connection_flags(replay)
    replay.add_argument("--table", required=True, type=table_name,
                        help="the table, NAMESPACE.TABLE, as listed under tables: in --config (its format and "
                             "settings decode the letters)")
    replay.add_argument("--reason", help="only dead letters with this reason code, e.g. unknown_schema_id "
                                         "(default: every reason)")
    replay.add_argument("--dry-run", action="store_true", help="decode and count, change nothing")
    replay.set_defaults(handler=command)


def command(args: argparse.Namespace, argv: list[str]) -> int:
    from tabletopic.catalog.loader import open_catalog
    from tabletopic.core.reasons import Reason
    from tabletopic.decode.avro import WriterSchemas
    from tabletopic.kafka.registry import SchemaRegistry
    from tabletopic.observe.progress import progress
    from tabletopic.replay import replay

    # The letters are in the catalog: no broker is asked; Avro letters need the registry.
    config = load(args, connection_flags(args), needs={TABLES, REGISTRY},
                  without_tables=f"list {args.table} under tables: in --config (its settings decode the letters)")
    logs.configure(config.log_level, secrets=config.secret_values)
    spec = table_in(config, args.table)
    if spec is None:
        raise ConfigError("--table", f"{args.table} is not one of the tables in --config")
    if args.reason is not None and args.reason not in {str(r) for r in Reason}:
        raise ConfigError("--reason", f"unknown reason code {args.reason!r}; one of {', '.join(map(str, Reason))}")
    registry = config.schema_registry
    writer_schemas = WriterSchemas(SchemaRegistry(registry.url, registry.properties)) if registry.url else None
    if spec.is_upsert:
        # A dead letter is an older change of its key: applied now, it could overwrite a newer value or bring
        # back a deleted key. Applying only the ones still latest per key needs the topic read: not yet.
        raise ConfigError("--table", f"{args.table} is an upsert table, whose dead letters cannot be replayed yet: "
                                     "produce a fixed record under its key again (the latest change wins)")
    with progress("replay.progress", {}, table=args.table) as shown:
        report = replay(open_catalog(config.catalog), spec, config.group_id, writer_schemas, args.reason,
                        args.dry_run, on_progress=shown.report)
    verb = "would replay" if args.dry_run else "replayed"
    print(f"dead letters chosen: {report.chosen}, {verb}: {report.replayed} (appended {report.appended}), "
          f"still bad: {report.still_bad}, refused: {report.foreign} from topics the table does not read, "
          f"{report.unrestorable} kept only in part")
    return 0
