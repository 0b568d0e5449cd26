"""`tabletopic status`: per table, lag, freshness, last commit, snapshots and small files."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tabletopic import logs
from tabletopic.cli.common import KAFKA, TABLES, add_command, add_connection_flags, connection_flags, load

EXAMPLE = """\
  tabletopic status --config tabletopic.yaml
  tabletopic status --config tabletopic.yaml --output json"""
COLUMNS = ("table", "lag", "partitions_invalid", "last_commit_age_s", "newest_record_age_s", "snapshots",
           "data_files", "small_files")


def add(commands: Any) -> None:
    parser = add_command(commands, "status", "per table: lag, freshness, last commit, snapshots, small files", EXAMPLE,
                         description="Per table of --config (route targets, pattern tables and dead-letter tables "
                                     "included): lag, freshness, last commit, snapshots, small files.")
    add_connection_flags(parser)
    parser.add_argument("--output", choices=("text", "json"), default="text", help="a table for people, or JSON")
    parser.set_defaults(handler=command)


def command(args: argparse.Namespace, argv: list[str]) -> int:
    from tabletopic.catalog.loader import open_catalog
    from tabletopic.status import statuses as table_statuses

    # The tables come from the config; the broker gives each one's lag.
    config = load(args, connection_flags(args), needs={KAFKA, TABLES},
                  without_tables="list the tables under tables: in --config")
    logs.configure("warning", secrets=config.secret_values)
    statuses = table_statuses(open_catalog(config.catalog), config)
    if args.output == "json":
        print(json.dumps([s.as_dict() for s in statuses]))
        return 0
    print("  ".join(COLUMNS))
    for s in statuses:
        values = s.as_dict()
        print("  ".join("-" if values[c] is None else str(values[c]) for c in COLUMNS))
    return 0
