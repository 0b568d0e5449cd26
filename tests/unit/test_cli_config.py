"""Each command asks only for what it uses, builds its table from flags when no file lists it, and
never suggests a flag it does not have."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from tabletopic.catalog.loader import open_catalog
from tabletopic.cli import build_parser, main
from tabletopic.cli.backfill import without_range_flags
from tabletopic.cli.common import timestamp_ms
from tabletopic.cli.offsets import table_config
from tabletopic.config import load_config
from tabletopic.exceptions import ConfigError


@pytest.fixture(autouse=True)
def no_config_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("TABLETOPIC_"):
            monkeypatch.delenv(name)


def test_offsets_reset_needs_no_config_file_given_table_and_topic() -> None:
    args = build_parser().parse_args(["offsets", "reset", "--bootstrap-servers", "b:9092", "--table", "shop.orders",
                                      "--topic", "orders", "--to-earliest"])
    config, spec = table_config(args)
    assert (spec.table, spec.all_topics) == ("shop.orders", ["orders"])
    assert config.kafka["bootstrap.servers"] == "b:9092"


def test_offsets_of_a_table_no_file_lists_ask_for_its_topic(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["offsets", "show", "--bootstrap-servers", "b:9092", "--table", "shop.orders"]) == 2
    assert "--topic" in capsys.readouterr().err


def test_an_error_in_a_flag_names_the_flag(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["run", "--bootstrap-servers", "b:9092", "--warehouse", str(tmp_path), "--table", "shop.orders",
                 "--topic", "orders", "--commit-interval", "-1"])
    assert code == 2
    error = capsys.readouterr().err
    assert "--commit-interval" in error and "commit.interval_seconds" not in error, error


TABLE_FLAGS = ("--table", "--into")
BAD_TABLE_NAMES = ("shop..orders", "shop.", ".orders", "shop", "my table", "shop.my table", "shop.\torders")


def table_flags(parser: argparse.ArgumentParser | None = None,
                path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str]]:
    """(argv prefix, flag) of every flag of every command that names a table."""
    found = []
    for action in (parser or build_parser())._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += [((*path, name), flag) for flag in TABLE_FLAGS if flag in sub._option_string_actions]
                found += table_flags(sub, (*path, name))
    return found


def test_the_table_flags_are_found() -> None:
    assert {(" ".join(path), flag) for path, flag in table_flags()} >= {
        ("run", "--table"), ("backfill", "--table"), ("backfill", "--into"), ("audit", "--table"),
        ("compact", "--table"), ("maintain", "--table"), ("dlq replay", "--table"), ("offsets show", "--table"),
        ("offsets reset", "--table"), ("rebuild", "--table")}


@pytest.mark.parametrize(("path", "flag"), table_flags(), ids=lambda v: " ".join(v) if isinstance(v, tuple) else v)
@pytest.mark.parametrize("name", BAD_TABLE_NAMES)
def test_a_bad_table_name_in_a_flag_is_refused_as_argparse_refuses(
        path: tuple[str, ...], flag: str, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*path, flag, name])
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert f"error: argument {flag}: expected NAMESPACE.TABLE" in error and repr(name) in error, error


@pytest.mark.parametrize("name", ["shop.orders", "a.b.c", "shop.orders_v2", "ünï.cödé"])
def test_a_good_table_name_in_a_flag_passes_as_it_is(name: str) -> None:
    args = build_parser().parse_args(["backfill", "--topic", "t", "--table", name, "--into", name,
                                      "--from-offset", "0"])
    assert (args.table, args.into) == (name, name)


@pytest.mark.parametrize("argv", [["status"], ["dlq", "replay", "--table", "shop.orders"]])
def test_commands_without_table_flags_do_not_suggest_them(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, "--bootstrap-servers", "b:9092"]) == 2
    error = capsys.readouterr().err
    assert "tables" in error and "--topic" not in error, error


def test_timestamps_are_utc_unless_they_say_otherwise() -> None:
    assert timestamp_ms("--to-timestamp", "1970-01-01T00:00:01Z") == 1000
    assert timestamp_ms("--to-timestamp", "1970-01-01T00:00:01") == 1000
    assert timestamp_ms("--to-timestamp", "1970-01-01T01:00:01+01:00") == 1000
    with pytest.raises(ConfigError, match="--to-timestamp"):
        timestamp_ms("--to-timestamp", "yesterday")


def test_a_parallel_backfill_child_gets_no_range_flags_of_its_parent() -> None:
    argv = ["backfill", "--config", "c.yaml", "--topic", "t", "--table", "a.b", "--from-offset", "5",
            "--to-timestamp=2026-01-01", "--workers", "4", "--max-records-per-second", "900"]
    assert without_range_flags(argv) == ["backfill", "--config", "c.yaml", "--topic", "t", "--table", "a.b"]


@pytest.mark.parametrize("command", [["compact"], ["maintain", "--dry-run"]])
def test_compact_and_maintain_need_no_kafka_settings(command: list[str], tmp_path: Path) -> None:
    warehouse = tmp_path / "wh"
    warehouse.mkdir()
    catalog = open_catalog(load_config(None, {"catalog": {"warehouse": str(warehouse)}}, {}, needs=frozenset()).catalog)
    catalog.create_namespace("ns")
    catalog.create_table("ns.t", schema=pa.schema([("n", pa.int64())]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TABLETOPIC_")}
    done = subprocess.run([sys.executable, "-m", "tabletopic", *command, "--warehouse", str(warehouse),
                           "--table", "ns.t"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert ("compacted ns.t: 0 files" if command == ["compact"] else "orphans: 0 found") in done.stdout


def test_a_table_the_catalog_does_not_hold_is_a_clear_error_not_a_traceback(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    warehouse = tmp_path / "wh"
    warehouse.mkdir()
    assert main(["compact", "--warehouse", str(warehouse), "--table", "ns.missing"]) == 2
    said = capsys.readouterr().err
    assert "no such table in the catalog" in said and "ns.missing" in said and "Traceback" not in said
