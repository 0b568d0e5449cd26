"""The `tabletopic` command: one module per command (run, audit, dlq replay, compact, maintain,
offsets show/reset, backfill, rebuild, status, quickstart); common.py holds what they share."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib import metadata

from tabletopic import logs
from tabletopic.cli import audit, backfill, common, compact, dlq, maintain, offsets, quickstart, rebuild, run, status
from tabletopic.core.exits import ExitCode
from tabletopic.exceptions import ConfigError

COMMANDS = (run, backfill, audit, status, offsets, dlq, compact, maintain, rebuild, quickstart)
EXAMPLE = """\
Example:
  tabletopic quickstart
  tabletopic run --config tabletopic.yaml
  tabletopic <command> --help"""


def version() -> str:
    try:
        return metadata.version("tabletopic")
    except metadata.PackageNotFoundError:  # a source tree on the path, never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tabletopic", description="Kafka topics into Iceberg tables, exactly once.",
                                     epilog=EXAMPLE, formatter_class=common.HelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}",
                        help="print the installed version and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add(commands)
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
        return int(args.handler(args, argv))
    except ConfigError as exc:
        print(f"tabletopic: {logs.masked(str(exc))}", file=sys.stderr)
        return ExitCode.CONFIG
    except Exception as exc:
        if not _no_such_table(exc):
            raise
        # a command on a table the catalog does not hold (a typo, another warehouse)
        print(f"tabletopic: no such table in the catalog: {logs.masked(str(exc))}", file=sys.stderr)
        return ExitCode.CONFIG


def _no_such_table(exc: Exception) -> bool:
    """pyiceberg's NoSuchTableError, without loading pyiceberg where nothing did (a pool's supervisor)."""
    if "pyiceberg.exceptions" not in sys.modules:
        return False
    from pyiceberg.exceptions import NoSuchTableError

    return isinstance(exc, NoSuchTableError)
