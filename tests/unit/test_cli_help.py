"""Every command's help: an example, help on every option with its default, the version, the exit codes."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator

import pytest

from tabletopic.cli import build_parser, main
from tabletopic.cli.common import HelpFormatter
from tabletopic.config import MaintenanceConfig
from tabletopic.core.exits import MEANINGS, ExitCode


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...],
                                                                                            argparse.ArgumentParser]]:
    """(argv prefix, parser) of every command and subcommand."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from commands(sub, (*path, name))


ALL = list(commands(build_parser()))
NAMES = [" ".join(path) for path, _ in ALL]


def test_every_command_is_walked() -> None:
    assert {"run", "audit", "dlq", "dlq replay", "compact", "maintain", "offsets", "offsets show", "offsets reset",
            "backfill", "rebuild", "status", "quickstart"} <= set(NAMES)


@pytest.mark.parametrize(("path", "parser"), ALL, ids=NAMES)
def test_help_exits_0_with_an_example(path: tuple[str, ...], parser: argparse.ArgumentParser,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*path, "--help"])
    assert exit_.value.code == 0
    assert "Example" in capsys.readouterr().out


@pytest.mark.parametrize(("path", "parser"), ALL, ids=NAMES)
def test_every_option_has_help_with_its_default(path: tuple[str, ...], parser: argparse.ArgumentParser) -> None:
    assert parser.formatter_class is HelpFormatter
    for action in parser._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS or "-h" in action.option_strings:
            continue
        shown = HelpFormatter(parser.prog)._expand_help(action)
        assert shown.strip(), f"{' '.join(path)} {action.option_strings}: no help"
        if action.default not in (None, False):
            assert str(action.default) in shown, f"{' '.join(path)} {action.option_strings}: default not shown"
        assert "default: None" not in shown


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert re.fullmatch(r"tabletopic \d+\.\d+\.\d+\S*\n", capsys.readouterr().out)


def test_every_exit_code_has_a_one_line_meaning() -> None:
    assert set(MEANINGS) == set(ExitCode)
    for code in ExitCode:
        assert code.meaning.strip() and "\n" not in code.meaning, code


def test_run_help_lists_every_exit_code_with_its_name_and_meaning(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    listed = " ".join(capsys.readouterr().out.split("Exit codes:", 1)[1].split())  # as argparse may wrap it
    for code in ExitCode:
        assert f"{code.value} {code.name} {' '.join(code.meaning.split())}" in listed, code


def test_maintain_defaults_are_the_configs() -> None:
    """A flag left out means the config's maintenance setting (or its default): never a number of its own."""
    maintain = dict(ALL)[("maintain",)]
    args = maintain.parse_args(["--table", "a.b"])
    for flag in ("keep_snapshots", "max_manifests", "expire_older_than_hours", "orphans_older_than_hours",
                 "target_file_size"):
        assert getattr(args, flag) is None, flag
    text = maintain.format_help()
    defaults = MaintenanceConfig()
    assert f"maintenance.keep_snapshots, else {defaults.keep_snapshots})" in " ".join(text.split())
