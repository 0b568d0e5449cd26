"""One definition of the exit codes, with the values the README documents and the chart relies on."""

from __future__ import annotations

from tabletopic import supervisor
from tabletopic.core.exits import ExitCode


def test_exit_codes_keep_their_documented_values() -> None:
    assert {code.name: int(code) for code in ExitCode} == {
        "OK": 0, "BAD_RECORD": 1, "CONFIG": 2, "SHUTDOWN_TIMEOUT": 3, "COMMIT_FAILED": 4, "CRASHED": 70,
    }


def test_the_supervisor_stops_for_good_only_on_a_bad_record_or_a_bad_config() -> None:
    assert set(supervisor.FATAL_EXITS) == {ExitCode.BAD_RECORD, ExitCode.CONFIG}
