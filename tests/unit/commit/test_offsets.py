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


def test_topic_ids_are_read_from_the_snapshot_that_holds_the_committed_offsets():
    from tabletopic.commit.offsets import committed_topic_ids, encode_topic_ids, topic_ids_key

    offsets, ids = offsets_key("g"), topic_ids_key("g")
    summaries = [
        {"tabletopic.commit-id": "compaction"},
        {offsets: encode_offsets({("t", 0): 7}), ids: encode_topic_ids({"t": "new"})},
        {offsets: encode_offsets({("t", 0): 3}), ids: encode_topic_ids({"t": "old"})},
    ]
    assert committed_topic_ids(summaries, "g") == {"t": "new"}
    # Written before ids were recorded: none, and the walk stops at the offsets all the same.
    assert committed_topic_ids([{offsets: "{}"}, {offsets: "{}", ids: encode_topic_ids({"t": "x"})}], "g") == {}
    assert committed_topic_ids(summaries, "other") == {}


def test_ids_recorded_with_a_commit_are_cumulative_and_those_the_records_were_read_from():
    from tabletopic.commit.offsets import stale_topics, topic_ids_to_record

    recorded = {"a": "id-a", "b": "id-b"}
    assert topic_ids_to_record(recorded, ["b", "c"], {"b": "id-b", "c": "id-c", "d": "id-d"}) == \
        {"a": "id-a", "b": "id-b", "c": "id-c"}
    assert topic_ids_to_record({}, ["a"], {}) == {}  # unknown: nothing recorded, nothing invented
    assert stale_topics(recorded, {"a": "id-a", "b": "id-b2", "c": "id-c"}) == {"b"}


def test_a_changed_topic_id_is_a_recreation_whatever_the_bounds_say():
    from tabletopic.commit.offsets import identity_problem

    assert identity_problem("x", "x") is None
    assert identity_problem(None, "x") is None  # a table from before ids were recorded adopts the current one
    unknown = identity_problem("x", None)  # the broker did not say: never read on at the old offsets
    assert unknown is not None and "did not give the topic's id" in unknown
    problem = identity_problem("old", "new")
    assert problem is not None and "recreated" in problem and "new" in problem and "old" in problem


def test_a_recreated_topic_is_reset_whole_or_not_at_all():
    import pytest

    from tabletopic.exceptions import TabletopicError
    from tabletopic.offsets_admin import _refuse_a_recreated_topic_in_part as refuse

    committed = {("t", 0): 100, ("t", 1): 90, ("u", 0): 5}
    with pytest.raises(TabletopicError, match=r"partitions \[1\]"):
        refuse(committed, {"t": "old"}, {"t": "new"}, {("t", 0): 0})
    refuse(committed, {"t": "old"}, {"t": "new"}, {("t", 0): 0, ("t", 1): 0})  # whole: fine
    refuse(committed, {"t": "same"}, {"t": "same"}, {("t", 0): 0})  # not recreated: one partition is fine
    refuse(committed, {}, {"t": "new"}, {("t", 0): 0})  # no id recorded yet: nothing to tell apart
