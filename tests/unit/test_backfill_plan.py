"""Where a backfill range of one partition starts, and which ranges a live table refuses. Pure."""

from __future__ import annotations

import pytest

from tabletopic.backfill import PartitionPlan, RefusedRange, check_live, resume_point


def plan(start: int, end: int, done: int | None = None, began: int | None = None) -> PartitionPlan:
    return resume_point("t", "a.b", 0, start, end, done, began)


def test_a_new_range_begins_at_its_start_and_is_recorded():
    assert plan(100, 200) == PartitionPlan(0, 100, 200, begins=100)
    assert plan(300, 400, done=200, began=100) == PartitionPlan(0, 300, 400, begins=300)  # above an earlier one


def test_a_rerun_resumes_where_the_same_backfill_stopped():
    assert plan(100, 200, done=150, began=100) == PartitionPlan(0, 150, 200)
    assert plan(100, 200, done=100, began=100) == PartitionPlan(0, 100, 200)
    assert plan(120, 200, done=150, began=100).start == 150  # within what the earlier one began
    finished = plan(100, 200, done=200, began=100)
    assert finished.records == 0 and finished.begins is None


def test_a_range_below_an_earlier_backfill_is_refused_not_taken_for_done():
    with pytest.raises(RefusedRange, match=r"t/0: offsets 0\.\.99 begin below offset 100.*from 200 on"):
        plan(0, 100, done=200, began=100)
    with pytest.raises(RefusedRange, match="begin below offset 100"):
        plan(50, 150, done=200, began=100)
    with pytest.raises(RefusedRange, match="an unknown offset"):
        plan(0, 100, done=200, began=None)


def test_an_empty_range_plans_nothing():
    assert plan(100, 100, done=500, began=400).records == 0


def test_a_live_writer_without_a_commit_refuses_any_range():
    with pytest.raises(RefusedRange, match=r"has not committed this partition yet.*--into a new table"):
        check_live("t", "a.b", 0, 0, 10, live_next=None, first_live=None)
    check_live("t", "a.b", 0, 10, 10, live_next=None, first_live=None)  # nothing to read: nothing to refuse


def test_a_live_table_refuses_ranges_reaching_its_rows_or_its_offsets():
    check_live("t", "a.b", 0, 0, 100, live_next=500, first_live=100)
    with pytest.raises(RefusedRange, match="already holds"):
        check_live("t", "a.b", 0, 0, 101, live_next=500, first_live=100)
    with pytest.raises(RefusedRange, match="goes on reading"):
        check_live("t", "a.b", 0, 0, 501, live_next=500, first_live=None)
