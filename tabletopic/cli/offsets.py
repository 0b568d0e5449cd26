"""`tabletopic offsets show | reset`: where a table stands in its topics; move it (recorded in its history)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tabletopic import logs
from tabletopic.cli.common import (
    KAFKA,
    TABLES,
    add_command,
    add_connection_flags,
    connection_flags,
    load,
    table_in,
    table_name,
    timestamp_ms,
)
from tabletopic.config import Config, TableConfig
from tabletopic.exceptions import ConfigError

SHOW_EXAMPLE = """\
  tabletopic offsets show --config tabletopic.yaml --table shop.orders
  tabletopic offsets show --bootstrap-servers localhost:9092 --warehouse ./warehouse --table shop.orders \\
      --topic orders --output json"""
RESET_EXAMPLE = """\
  tabletopic offsets reset --config tabletopic.yaml --table shop.orders --to-timestamp 2026-11-27T10:00:00Z --dry-run
  tabletopic offsets reset --bootstrap-servers localhost:9092 --warehouse ./warehouse --table shop.orders \\
      --topic orders --to-earliest"""


def add(commands: Any) -> None:
    parser = add_command(commands, "offsets", "where a table stands in its topics; move it",
                         f"{SHOW_EXAMPLE}\n{RESET_EXAMPLE}")
    subcommands = parser.add_subparsers(dest="offsets_command", required=True, metavar="{show,reset}")
    show = add_command(subcommands, "show", "committed offset, log start and end, lag per partition", SHOW_EXAMPLE)
    _add_table_flags(show, "its topic, when the table is not in --config (default: the table's topics in --config)")
    show.add_argument("--output", choices=("text", "json"), default="text", help="a table for people, or JSON")
    show.set_defaults(handler=show_command)

    reset = add_command(subcommands, "reset", "set a table's offsets (recorded in its history)", RESET_EXAMPLE)
    _add_table_flags(reset, "which topic: needed when the table reads several, or is not in --config "
                            "(default: the table's one topic in --config)")
    reset.add_argument("--partitions", help="comma-separated partitions (default: all)")
    to = reset.add_mutually_exclusive_group(required=True)
    to.add_argument("--to-earliest", action="store_true", help="to the log start: read everything again")
    to.add_argument("--to-latest", action="store_true", help="to the log end: skip what is there now")
    to.add_argument("--to-offset", type=int, help="to this offset in each partition")
    to.add_argument("--to-timestamp", help="to the first record at or after this ISO-8601 time, "
                                           "e.g. 2026-11-27T10:00:00Z")
    reset.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    reset.set_defaults(handler=reset_command)


def _add_table_flags(parser: argparse.ArgumentParser, topic_help: str) -> None:
    add_connection_flags(parser)
    parser.add_argument("--table", required=True, type=table_name, help="the table, NAMESPACE.TABLE")
    parser.add_argument("--topic", help=topic_help)


def table_config(args: argparse.Namespace) -> tuple[Config, TableConfig]:
    """The config and the table's entry: the one in --config, else one made of --table and --topic
    (the flags-only form: no config file needed)."""
    flags = connection_flags(args)
    config = load(args, flags, needs={KAFKA})
    spec = table_in(config, args.table)
    if spec is not None:
        return config, spec
    if not args.topic:
        raise ConfigError("--topic", f"required: {args.table} is not one of the tables in --config, so give its topic")
    # Offsets are not decoded: the format only satisfies validation.
    flags.table({"table": args.table, "topic": args.topic, "format": "raw"}, {"table": "--table", "topic": "--topic"})
    config = load(args, flags, needs={KAFKA, TABLES})  # offsets are never decoded: no registry
    made = table_in(config, args.table)
    assert made is not None  # the flags' table, just validated
    return config, made


def show_command(args: argparse.Namespace, argv: list[str]) -> int:
    from tabletopic.catalog.loader import open_catalog
    from tabletopic.offsets_admin import positions

    config, spec = table_config(args)
    logs.configure("warning", secrets=config.secret_values)
    topics = spec.all_topics
    if args.topic is not None:
        if args.topic not in topics:
            raise ConfigError("--topic", f"{args.table} reads {topics}, not {args.topic!r}")
        topics = [args.topic]
    rows = positions(open_catalog(config.catalog), args.table, config.group_id, config.kafka, topics)
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


def reset_command(args: argparse.Namespace, argv: list[str]) -> int:
    from tabletopic.catalog.loader import open_catalog
    from tabletopic.catalog.tables import load_if_exists
    from tabletopic.deadletter.rows import dlq_identifier
    from tabletopic.kafka.consumer import topic_ids
    from tabletopic.offsets_admin import positions, reset, reset_targets

    config, spec = table_config(args)
    logs.configure("warning", secrets=config.secret_values)
    catalog = open_catalog(config.catalog)
    topics = spec.all_topics
    topic = args.topic or (topics[0] if len(topics) == 1 else None)
    if topic is None or topic not in topics:
        raise ConfigError("--topic", f"one of {topics}")
    rows = positions(catalog, args.table, config.group_id, config.kafka, [topic])
    try:
        partitions = (sorted(int(p) for p in args.partitions.split(",")) if args.partitions
                      else [r.partition for r in rows])
    except ValueError:
        raise ConfigError("--partitions", f"expected comma-separated partition numbers, got {args.partitions!r}") \
            from None
    if args.to_timestamp:
        moment_ms = timestamp_ms("--to-timestamp", args.to_timestamp)
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
