"""`tabletopic backfill`: read a range of a topic into a table, exactly once and resumable."""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
from typing import Any

from tabletopic import logs
from tabletopic.cli.common import (
    KAFKA,
    REGISTRY,
    add_command,
    add_connection_flags,
    connection_flags,
    load,
    table_name,
    timestamp_ms,
)
from tabletopic.core.throttle import rate_shares
from tabletopic.exceptions import ConfigError

EXAMPLE = """\
  tabletopic backfill --config tabletopic.yaml --topic orders --table shop.orders \\
      --from-timestamp 2026-01-01T00:00:00Z --to-timestamp 2026-02-01T00:00:00Z --dry-run
  tabletopic backfill --config tabletopic.yaml --topic orders --table shop.orders --into shop.orders_v2 \\
      --from-offset 0 --workers 4
  tabletopic backfill --config tabletopic.yaml --topic orders --table shop.orders --into shop.orders_v2 \
      --from-offset 0 --max-records-per-second 20000    # leave the live writer its share of the machine

Progress: a bar per partition (rate, ETA) on a terminal, else backfill.progress log lines."""
# Flags that say which range to read: a parallel backfill's parent gives each child its own instead.
RANGE_FLAGS = frozenset({"--from-offset", "--from-timestamp", "--partitions", "--to-offset", "--to-timestamp",
                         "--workers", "--partition-ends", "--max-records-per-second"})


def add(commands: Any) -> None:
    parser = add_command(commands, "backfill", "read a range of a topic into a table, exactly once, resumable",
                         EXAMPLE)
    add_connection_flags(parser)
    parser.add_argument("--topic", required=True, help="the topic to read")
    parser.add_argument("--table", required=True, type=table_name,
                        help="NAMESPACE.TABLE: its settings in --config (format, partitioning) apply; a table not "
                             "in --config is read as JSON")
    parser.add_argument("--into", type=table_name, help="a new table to fill instead (a rebuilt projection)")
    start = parser.add_mutually_exclusive_group(required=True)
    start.add_argument("--from-offset", type=int, help="from this offset in every partition")
    start.add_argument("--from-timestamp", help="ISO-8601: from the first record at or after it")
    start.add_argument("--partitions", help="PARTITION:OFFSET,… — only these partitions, from these offsets")
    stop = parser.add_mutually_exclusive_group()
    stop.add_argument("--to-offset", type=int, help="stop before this offset (default: the log end now)")
    stop.add_argument("--to-timestamp", help="ISO-8601: stop before the first record at or after it")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, read nothing")
    parser.add_argument("--workers", type=int, default=1, help="processes, each reading a share of the partitions")
    parser.add_argument("--max-records-per-second", type=float, metavar="N",
                        help="read at most N records a second on average, all --workers together (default: as "
                             "fast as it can); the live writer beside it keeps its share of the machine")
    parser.add_argument("--partition-ends", help=argparse.SUPPRESS)  # PARTITION:OFFSET,… from a parent's plan
    parser.set_defaults(handler=command)


def _offsets_by_partition(flag: str, text: str) -> dict[int, int]:
    try:
        return {int(p): int(o) for p, o in (item.split(":") for item in text.split(","))}
    except ValueError:
        raise ConfigError(flag, "expected PARTITION:OFFSET,…, e.g. 0:1200,1:980") from None


def command(args: argparse.Namespace, argv: list[str]) -> int:
    from tabletopic.backfill import RefusedRange, backfill_target, plan_backfill, run_backfill
    from tabletopic.catalog.loader import open_catalog
    from tabletopic.kafka.reader import log_bounds, offsets_at
    from tabletopic.supervisor import stop_with_supervisor

    stop_with_supervisor()  # a worker of a parallel backfill: stop when its parent dies, even by kill -9
    if args.workers < 1:
        raise ConfigError("--workers", "must be 1 or more")
    rate = args.max_records_per_second
    if rate is not None and not (rate > 0 and math.isfinite(rate)):
        raise ConfigError("--max-records-per-second", f"must be a number above 0, not {rate}")
    # The table's entry in --config, if any, gives its settings; a table not listed is read as JSON.
    config = load(args, connection_flags(args), needs={KAFKA, REGISTRY})
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
        starts = _offsets_by_partition("--partitions", args.partitions)
    elif args.from_timestamp:
        starts = offsets_at(config.kafka, args.topic, sorted(bounds),
                            timestamp_ms("--from-timestamp", args.from_timestamp))
    else:
        starts = dict.fromkeys(bounds, args.from_offset)
    unknown = sorted(set(starts) - set(bounds))
    if unknown:
        raise ConfigError("--partitions", f"topic {args.topic!r} has no partition {unknown}")
    starts = {p: max(o, bounds[p][0]) for p, o in starts.items()}
    if args.partition_ends:
        ends = _offsets_by_partition("--partition-ends", args.partition_ends)
    elif args.to_timestamp:
        ends = offsets_at(config.kafka, args.topic, sorted(starts), timestamp_ms("--to-timestamp", args.to_timestamp))
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
        return _in_parallel(args, argv, plan)
    # A parallel backfill's children log their progress: the parent's terminal is not theirs to draw on.
    read = run_backfill(catalog, config, target, plan, plain_progress=bool(args.partition_ends),
                        max_records_per_second=rate)
    print(f"backfill done: {read} records into {spec.table}")
    return 0


def _in_parallel(args: argparse.Namespace, argv: list[str], plan: Any) -> int:
    """One child per share of the partitions, each a backfill of its own (the same offsets key: they
    never share a partition); the parent waits and exits with the worst code."""
    from tabletopic.supervisor import SUPERVISOR_PID_ENV

    shares = [share for share in (plan.partitions[i::args.workers] for i in range(args.workers)) if share]
    rates = rate_shares(args.max_records_per_second, [sum(p.records for p in share) for share in shares])
    base = [a for a in argv if a != "--dry-run"]
    children = []
    for share, rate in zip(shares, rates, strict=True):
        starts = ",".join(f"{p.partition}:{p.start}" for p in share)
        ends = ",".join(f"{p.partition}:{p.end}" for p in share)
        child_argv = [*without_range_flags(base), "--partitions", starts, "--partition-ends", ends, "--workers", "1"]
        if rate is not None:
            child_argv += ["--max-records-per-second", repr(rate)]
        env = {**os.environ, SUPERVISOR_PID_ENV: str(os.getpid())}  # a child dies with this parent
        children.append(subprocess.Popen([sys.executable, "-m", "tabletopic", *child_argv], env=env))
    codes = [child.wait() for child in children]
    return max(codes, default=0)


def without_range_flags(argv: list[str]) -> list[str]:
    """`argv` without the range flags and their values (`--flag value` or `--flag=value`)."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in RANGE_FLAGS:
            skip = "=" not in arg
            continue
        kept.append(arg)
    return kept
