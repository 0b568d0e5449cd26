"""Which offsets a read-committed consumer passed without a record (commit/offsets.py): the decision that
lets a table's next offset reach past a transaction marker."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tabletopic.commit.offsets import OffsetRange, passed_without_records


def test_offsets_passed_beyond_what_the_table_covers_are_claimed():
    # records 0..9 committed (next 10), the commit marker at 10: the consumer stands at 11
    assert passed_without_records(10, 11) == OffsetRange(10, 10)
    assert passed_without_records(3, 9) == OffsetRange(3, 8)


def test_nothing_is_claimed_when_the_consumer_stands_where_the_table_does_or_behind():
    assert passed_without_records(10, 10) is None
    assert passed_without_records(10, 4) is None  # sought back: the table holds more than was read again


def test_nothing_is_claimed_while_either_side_is_unknown():
    assert passed_without_records(None, 11) is None  # the table holds nothing of the partition
    assert passed_without_records(10, None) is None  # nothing consumed since the assignment or a seek


@given(st.integers(0, 10**12), st.integers(0, 10**12))
def test_a_claim_starts_where_the_table_ends_and_stops_below_the_position(covered, position):
    gap = passed_without_records(covered, position)
    if position <= covered:
        assert gap is None
    else:
        assert gap is not None and gap.first == covered and gap.next_offset == position
