"""The arithmetic of command-line progress, and its plain form when stderr is no terminal."""

from __future__ import annotations

import io

import pytest
from structlog.testing import capture_logs

from tabletopic.observe.progress import Progress, duration_text, pace


def test_rate_and_eta_from_what_is_done() -> None:
    measured = pace(done=300, total=1000, elapsed_s=3.0)
    assert measured.rate == pytest.approx(100.0)
    assert measured.eta_s == pytest.approx(7.0)


def test_no_eta_before_anything_is_done_and_none_left_when_all_is() -> None:
    assert pace(0, 1000, 5.0).eta_s is None
    assert pace(0, 1000, 0.0).rate == 0.0
    assert pace(1000, 1000, 10.0).eta_s == 0.0
    assert pace(0, 0, 0.0).eta_s == 0.0  # an empty range is done at once


def test_more_done_than_planned_leaves_nothing() -> None:
    assert pace(1200, 1000, 2.0).eta_s == 0.0


def test_durations_read_as_clock_times() -> None:
    assert duration_text(59.6) == "1:00"
    assert duration_text(3725) == "1:02:05"


class NotATerminal(io.StringIO):
    def isatty(self) -> bool:
        return False


def test_without_a_terminal_it_logs_progress_lines() -> None:
    stream = NotATerminal()
    with capture_logs() as logged:
        shown = Progress("backfill.progress", {"t/0": 100, "t/1": 50}, stream=stream, every_s=0.0, table="a.b")
        shown.advance("t/0", 60)
        shown.step("t/1", 15)
        shown.show()
        shown.close()
        shown.show(final=True)
    assert stream.getvalue() == ""  # nothing drawn
    first, last = logged
    assert first["event"] == "backfill.progress" and first["table"] == "a.b"
    assert (first["records"], first["total"], first["final"]) == (75, 150, False)
    assert first["parts"] == {"t/0": {"done": 60, "of": 100}, "t/1": {"done": 15, "of": 50}}
    assert "rate" in first and "eta_s" in first and last["final"] is True


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_it_draws_and_logs_nothing() -> None:
    stream = Terminal()
    with capture_logs() as logged, Progress("compact.progress", {"files": 10}, unit="files", stream=stream) as shown:
        shown.advance("files", 4)
        shown.show(final=True)
    assert logged == []
    assert "4/10" in stream.getvalue()
