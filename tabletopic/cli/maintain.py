"""`tabletopic maintain`: compact, merge manifests, expire snapshots and remove orphan files, once."""

from __future__ import annotations

import argparse
import time
from typing import Any

from tabletopic.cli.common import add_command, add_connection_flags
from tabletopic.cli.compact import (
    MAINTENANCE_DEFAULTS,
    add_rewrite_flags,
    compact_showing_progress,
    open_for_maintenance,
)

EXAMPLE = """\
  tabletopic maintain --config tabletopic.yaml --table shop.orders --dry-run
  tabletopic maintain --warehouse ./warehouse --table shop.orders --keep-snapshots 50

Progress of the compaction: files rewritten, with rate and ETA, on a terminal, else compact.progress log lines."""


def _from_config(key: str) -> str:
    return f"(default: the config's maintenance.{key}, else {getattr(MAINTENANCE_DEFAULTS, key)})"


def add(commands: Any) -> None:
    parser = add_command(commands, "maintain", "compact, expire snapshots, remove orphan files, once", EXAMPLE)
    add_connection_flags(parser)
    add_rewrite_flags(parser)
    parser.add_argument("--expire-older-than-hours", type=float,
                        help="expire snapshots older than this (never the chain recovery needs) "
                             + _from_config("expire_older_than_hours"))
    parser.add_argument("--keep-snapshots", type=int,
                        help="newest snapshots always kept " + _from_config("keep_snapshots"))
    parser.add_argument("--max-manifests", type=int,
                        help="merge the manifest listing once it has this many " + _from_config("max_manifests"))
    parser.add_argument("--orphans-older-than-hours", type=float,
                        help="safety age: a younger unreferenced file may belong to a commit in flight "
                             + _from_config("orphans_older_than_hours"))
    parser.add_argument("--dry-run", action="store_true", help="list orphan files, change nothing")
    parser.set_defaults(handler=command)


def command(args: argparse.Namespace, argv: list[str]) -> int:
    from tabletopic.compaction.expire import expire
    from tabletopic.compaction.manifests import merge_manifests
    from tabletopic.compaction.orphans import remove_orphans

    opened = open_for_maintenance(args)
    catalog, settings = opened.catalog, opened.config.maintenance

    def setting(flag_value: Any, key: str) -> Any:
        return getattr(settings, key) if flag_value is None else flag_value

    now_ms = int(time.time() * 1000)
    if not args.dry_run:
        result = compact_showing_progress(opened, args)
        print(f"compacted: {result.files_removed} files into {result.files_added}")
        merged = merge_manifests(catalog, args.table, max(2, setting(args.max_manifests, "max_manifests")))
        print(f"manifests merged: {merged}")
        hours = setting(args.expire_older_than_hours, "expire_older_than_hours")
        expired = expire(catalog, args.table, now_ms - int(hours * 3_600_000),
                         setting(args.keep_snapshots, "keep_snapshots"))
        print(f"expired: {expired.expired} snapshots, {expired.files_deleted} files deleted")
    hours = setting(args.orphans_older_than_hours, "orphans_older_than_hours")
    orphans = remove_orphans(catalog, args.table, now_ms - int(hours * 3_600_000), args.dry_run)
    for path in orphans:
        print(f"orphan: {path}")
    print(f"orphans: {len(orphans)} {'found (dry run)' if args.dry_run else 'removed'}")
    return 0
