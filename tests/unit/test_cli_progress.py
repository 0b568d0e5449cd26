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


def test_a_loop_reports_parts_and_totals_it_learns_as_it_goes() -> None:
    stream = NotATerminal()
    with capture_logs() as logged:
        shown = Progress("compact.progress", {}, unit="files", stream=stream, every_s=0.0, table="a.b")
        shown.show()  # nothing reported yet: nothing to say
        shown.report("a.b", 0, 8)
        shown.report("a.b", 5, 8)
        shown.close()
        shown.show(final=True)
    assert [(line["files"], line["total"], line["final"]) for line in logged] == [(0, 8, False), (5, 8, False),
                                                                                 (5, 8, True)]
    assert all(line["event"] == "compact.progress" and line["table"] == "a.b" for line in logged)
    assert "records" not in logged[0]  # the count is named by its unit


def test_a_reported_part_is_drawn_on_a_terminal() -> None:
    stream = Terminal()
    with capture_logs() as logged, Progress("audit.progress", {}, stream=stream) as shown:
        shown.report("orders/0", 3, 12)
        shown.report("orders/1", 0, 5)
        shown.report("orders/0", 12, 12)
    assert logged == []
    drawn = stream.getvalue()
    assert "orders/0" in drawn and "12/12" in drawn and "orders/1" in drawn and "0/5" in drawn
