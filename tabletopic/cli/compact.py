"""`tabletopic compact`: rewrite a table's small files into bigger ones, once (the maintenance
process does it on its own while `run` runs)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tabletopic import logs
from tabletopic.cli.common import add_command, add_connection_flags, connection_flags, load, table_in, table_name
from tabletopic.config import Config, MaintenanceConfig
from tabletopic.exceptions import ConfigError

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

    from tabletopic.compaction.rewrite import CompactionResult

# The config's own defaults: a flag left out means what the config (or its default) says.
MAINTENANCE_DEFAULTS = MaintenanceConfig()
# compaction.rewrite.compact's own floor: fewer files than this in a partition are no rewrite.
MIN_FILES = 2

EXAMPLE = """\
  tabletopic compact --config tabletopic.yaml --table shop.orders
  tabletopic compact --warehouse ./warehouse --table shop.orders --target-file-size 268435456

Progress: files rewritten, with rate and ETA, on a terminal, else compact.progress log lines."""


def add(commands: Any) -> None:
    parser = add_command(commands, "compact", "rewrite a table's small files into bigger ones, once", EXAMPLE)
    add_connection_flags(parser)
    add_rewrite_flags(parser)
    parser.set_defaults(handler=command)


def add_rewrite_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--table", required=True, type=table_name, help="the table, NAMESPACE.TABLE")
    parser.add_argument(
        "--target-file-size", type=int,
        help="bytes per rewritten file (default: the table's target_file_size_bytes in --config, else "
             f"maintenance.target_file_size_bytes, else {MAINTENANCE_DEFAULTS.target_file_size_bytes})")
    parser.add_argument("--min-files", type=int, default=MIN_FILES,
                        help="fewest small files of one partition worth a rewrite")


@dataclass(frozen=True)
class Maintained:
    catalog: Catalog
    config: Config
    target_file_size: int


def open_for_maintenance(args: argparse.Namespace) -> Maintained:
    """The catalog (no Kafka, no tables needed) and the table's target file size; lowers this process's
    priority so the writers beside it keep their CPU."""
    from tabletopic.catalog.loader import open_catalog
    from tabletopic.compaction.scheduler import NICENESS

    config = load(args, connection_flags(args), needs=())
    listed = table_in(config, args.table)
    target = (args.target_file_size or (listed.target_file_size_bytes if listed is not None else None)
              or config.maintenance.target_file_size_bytes)
    if target <= 0:
        raise ConfigError("--target-file-size", "must be above 0")
    if args.min_files < 2:
        raise ConfigError("--min-files", "must be 2 or more")
    logs.configure(config.log_level, secrets=config.secret_values)
    os.nice(NICENESS)  # beside the writers: never starve them of CPU
    return Maintained(open_catalog(config.catalog), config, target)


def compact_showing_progress(opened: Maintained, args: argparse.Namespace) -> CompactionResult:
    from tabletopic.compaction.rewrite import compact
    from tabletopic.observe.progress import progress

    with progress("compact.progress", {}, unit="files", table=args.table) as shown:
        return compact(opened.catalog, args.table, opened.target_file_size, args.min_files,
                       on_progress=shown.report)


def command(args: argparse.Namespace, argv: list[str]) -> int:
    opened = open_for_maintenance(args)
    result = compact_showing_progress(opened, args)
    print(f"compacted {args.table}: {result.files_removed} files into {result.files_added} "
          f"({result.rows} rows, {result.attempts} attempts{', abandoned' if result.abandoned else ''})")
    return 0 if not result.abandoned else 1
