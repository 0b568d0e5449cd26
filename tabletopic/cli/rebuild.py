"""`tabletopic rebuild`: a new version of a table built from the log beside the live one, then a cutover;
and what follows one (--rollback, --drop-previous, --abandon, --show)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tabletopic import logs
from tabletopic.cli.common import (
    EVERYTHING,
    add_command,
    add_connection_flags,
    connection_flags,
    load,
    table_name,
    timestamp_ms,
)

EXAMPLE = """\
  tabletopic rebuild --config new.yaml --table shop.orders --max-records-per-second 20000
  tabletopic rebuild --config new.yaml --table shop.orders --rollback
  tabletopic rebuild --config tabletopic.yaml --table shop.orders --show"""


def add(commands: Any) -> None:
    parser = add_command(commands, "rebuild",
                         "a new version of a table built from the log beside the live one, then cut over", EXAMPLE)
    add_connection_flags(parser)
    parser.add_argument("--table", required=True, type=table_name,
                        help="NAMESPACE.TABLE; its entry in --config gives the new version's settings")
    since = parser.add_mutually_exclusive_group()
    since.add_argument("--from-earliest", action="store_true", help="from the log's start (the default)")
    since.add_argument("--from-timestamp", help="ISO-8601: from the first record at or after it")
    parser.add_argument("--max-records-per-second", type=float,
                        help="read no faster (default: no limit), to leave the live writer its share of the machine")
    parser.add_argument("--freeze-seconds", type=float, default=120.0,
                        help="how long a cutover may hold the live writer's commits before it lets go")
    parser.add_argument("--no-cutover", action="store_true", help="build and catch up, leave the live table as it is")
    parser.add_argument("--seed-from-table", action="store_true",
                        help="the live table's rows below the log start (lost to retention) re-projected into the "
                             "new version; the log supplies the rest")
    parser.add_argument("--metrics-port", type=int,
                        help="serve the rebuild's progress as Prometheus metrics on 127.0.0.1 at this port "
                             "(default: none)")
    act = parser.add_mutually_exclusive_group()
    act.add_argument("--rollback", action="store_true",
                     help="swap back to NS.T__previous (the config must be the one it was written under)")
    act.add_argument("--drop-previous", action="store_true", help="drop NS.T__previous and its dead letters")
    act.add_argument("--abandon", action="store_true", help="drop an unfinished NS.T__rebuild")
    act.add_argument("--show", action="store_true", help="print the settings the table records from its rebuild")
    parser.set_defaults(handler=command)


def command(args: argparse.Namespace, argv: list[str]) -> int:
    from tabletopic.catalog.loader import open_catalog
    from tabletopic.rebuild import manage
    from tabletopic.rebuild.cutover import SwapRefused
    from tabletopic.rebuild.run import RebuildRequest, rebuild

    # Dropping or showing a version touches the catalog only; a build and a rollback read the topic.
    catalog_only = args.drop_previous or args.abandon or args.show
    config = load(args, connection_flags(args), needs=() if catalog_only else EVERYTHING,
                  without_tables=f"list {args.table} under tables: in --config (its entry is the new version)")
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
                timestamp_ms("--from-timestamp", args.from_timestamp) if args.from_timestamp else None,
                args.max_records_per_second, args.freeze_seconds, cutover=not args.no_cutover,
                seed_from_table=args.seed_from_table)
            done = rebuild(catalog, config, request, writer_schemas)
    except SwapRefused as exc:
        print(f"tabletopic rebuild: refused: {exc}", file=sys.stderr)
        return 1
    print(done)
    return 0
