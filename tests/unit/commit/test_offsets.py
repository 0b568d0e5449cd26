import pytest

from tabletopic.commit.offsets import (
    OffsetRange,
    Verdict,
    committed_offsets,
    decode_offsets,
    encode_offsets,
    judge,
    merge_offsets,
    offsets_key,
)
from tabletopic.exceptions import OffsetsError


def test_offsets_round_trip_through_the_summary_text():
    offsets = {("orders.v1", 0): 10, ("orders.v1", 11): 3, ("a-b_c", 2): 0}
    assert decode_offsets(encode_offsets(offsets)) == offsets


def test_committed_offsets_come_from_the_newest_summary_that_has_the_group_key():
    key = offsets_key("g")
    summaries = [
        {"tabletopic.commit-id": "compaction, no offsets"},
        {key: encode_offsets({("t", 0): 7})},
        {key: encode_offsets({("t", 0): 3})},
    ]
    assert committed_offsets(summaries, "g") == {("t", 0): 7}
    assert committed_offsets(summaries, "other-group") == {}


@pytest.mark.parametrize(
    ("committed", "verdict"),
    [
        (None, Verdict.COMMIT),  # the table holds nothing of this partition
        (10, Verdict.COMMIT),  # next offset == first
        (4, Verdict.COMMIT),  # a gap (transaction markers, compaction) is legal
        (11, Verdict.FENCE),  # overlap: the table holds 10 already
        (20, Verdict.FENCE),  # overlap up to the last offset
        (21, Verdict.REPLAY),  # the whole batch is in the table
        (99, Verdict.REPLAY),
    ],
)
def test_judge_a_batch_of_offsets_10_to_20(committed, verdict):
    assert judge(OffsetRange(10, 20), committed) is verdict


def test_merge_keeps_other_partitions_and_refuses_to_go_backwards():
    parent = {("t", 0): 5, ("t", 1): 9}
    assert merge_offsets(parent, {("t", 0): 8}) == {("t", 0): 8, ("t", 1): 9}
    with pytest.raises(OffsetsError, match="backwards"):
        merge_offsets(parent, {("t", 1): 8})


def test_an_inverted_range_is_refused():
    with pytest.raises(OffsetsError):
        OffsetRange(5, 4)


def test_a_table_offset_outside_the_log_is_named_with_its_cause():
    from tabletopic.commit.offsets import position_problem

    assert position_problem(50, 0, 100) is None
    assert position_problem(100, 0, 100) is None  # at the end: nothing new yet
    assert position_problem(0, 0, 0) is None
    assert "records 10..19 are gone" in position_problem(10, 20, 100)
    assert "recreated" in position_problem(480, 0, 151)
