"""`tabletopic quickstart`: a local broker, sample events, a writer and the rows, on this machine."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tabletopic import logs
from tabletopic.cli.common import add_command
from tabletopic.core.exits import ExitCode

EXAMPLE = """\
  tabletopic quickstart
  tabletopic quickstart --records 100000 --warehouse /tmp/tabletopic-demo"""


def add(commands: Any) -> None:
    parser = add_command(commands, "quickstart", "local broker + sample events + writer + rows", EXAMPLE,
                         description="Start a local Kafka broker, produce sample events, write them to a table "
                                     "and show the rows (needs a source checkout: pip install -e '.[local]').")
    parser.add_argument("--records", type=int, default=10_000, help="sample events to produce")
    parser.add_argument("--warehouse", default="warehouse", help="folder the table is written to")
    parser.set_defaults(handler=command)


def command(args: argparse.Namespace, argv: list[str]) -> int:
    from tabletopic.local_services import local_services_missing

    if (missing := local_services_missing("quickstart")) is not None:
        print(f"tabletopic: {missing}", file=sys.stderr)
        return ExitCode.CONFIG
    logs.configure("info")
    from tabletopic.quickstart import quickstart

    return quickstart(args.records, args.warehouse)
