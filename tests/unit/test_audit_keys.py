import json

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tabletopic import audit_keys
from tabletopic.audit_keys import DELETED, compare_keys, expected_state
from tabletopic.core.records import RecordChunk
from tabletopic.core.upsert_mode import UpsertMode

ID = pa.schema([pa.field("id", pa.int64(), nullable=False)])
STRING_KEY = pa.schema([pa.field("_key", pa.large_string(), nullable=False)])


def state(rows):
    """Expected state rows from (id, partition, offset, deleted)."""
    ids, partitions, offsets, deleted = zip(*rows, strict=True) if rows else ([], [], [], [])
    return pa.table({"id": pa.array(ids, pa.int64()), "_kafka_partition": pa.array(partitions, pa.int32()),
                     "_kafka_offset": pa.array(offsets, pa.int64()), DELETED: pa.array(deleted, pa.bool_())})


def table(rows):
    """Table rows from (id, partition, offset)."""
    ids, partitions, offsets = zip(*rows, strict=True) if rows else ([], [], [])
    return pa.table({"id": pa.array(ids, pa.int64()), "_kafka_partition": pa.array(partitions, pa.int32()),
                     "_kafka_offset": pa.array(offsets, pa.int64())})


EXPECTED = state([(1, 0, 5, False), (2, 0, 6, False), (3, 1, 2, True)])
GOOD = [(1, 0, 5), (2, 0, 6)]


def counts(report):
    return report.missing, report.stale, report.resurrected, report.doubled


def test_a_table_holding_each_live_key_once_from_its_last_record_is_ok():
    report = compare_keys(EXPECTED, table(GOOD))
    assert counts(report) == (0, 0, 0, 0) and report.ok and report.samples == {}
    assert (report.live_keys, report.deleted_keys, report.rows) == (2, 1, 2)


@pytest.mark.parametrize(("rows", "expected_counts", "kind", "sample"), [
    ([(1, 0, 5)], (1, 0, 0, 0), "missing", "id=2 (topic 0/6)"),
    ([(1, 0, 5), (2, 0, 4)], (0, 1, 0, 0), "stale", "id=2 (table 0/4, topic 0/6)"),
    ([*GOOD, (3, 1, 1)], (0, 0, 1, 0), "resurrected", "id=3 (table 1/1, deleted at 1/2)"),
    ([*GOOD, (9, 0, 7)], (0, 0, 1, 0), "resurrected", "id=9 (table 0/7, never in the topic)"),
    ([*GOOD, (1, 0, 5)], (0, 0, 0, 1), "doubled", "id=1 (table 0/5, 0/5)"),
])
def test_each_count_is_triggered_alone(rows, expected_counts, kind, sample):
    report = compare_keys(EXPECTED, table(rows))
    assert counts(report) == expected_counts and not report.ok
    assert report.samples == {kind: [sample]}


def test_a_key_twice_with_an_old_row_is_doubled_not_stale_and_string_keys_compare_across_string_types():
    expected = pa.table({"_key": pa.array(["a"], pa.string()), "_kafka_partition": pa.array([0], pa.int32()),
                         "_kafka_offset": pa.array([3], pa.int64()), DELETED: [False]})
    actual = pa.table({"_key": pa.array(["a", "a"], pa.large_string()), "_kafka_partition": pa.array([0, 0],
                                                                                                      pa.int32()),
                       "_kafka_offset": pa.array([3, 1], pa.int64())})
    assert counts(compare_keys(expected, actual)) == (0, 0, 0, 1)


# --- the topic's side ---------------------------------------------------------------------------------

KAFKA_JSON_KEYS = UpsertMode("kafka-key", "json")


def chunks_of(records, sizes):
    """RecordChunks from (partition, offset, key, value), each partition's cut by `sizes`, partitions
    interleaved (the audit reads them one after another; the order across partitions must not matter)."""
    by_partition = {}
    for partition, offset, key, value in records:
        by_partition.setdefault(partition, []).append((offset, key, value))
    pending = []
    for partition, items in sorted(by_partition.items()):
        at = 0
        for size in sizes:
            part, at = items[at:at + size], at + size
            if part:
                pending.append(RecordChunk(partition=partition, topic="t", offsets=[o for o, _, _ in part],
                                           keys=[k for _, k, _ in part], values=[v for _, _, v in part],
                                           timestamps_ms=[0] * len(part), headers=[None] * len(part)))
        if at < len(items):
            rest = items[at:]
            pending.append(RecordChunk("t", partition, [o for o, _, _ in rest], [k for _, k, _ in rest],
                                       [v for _, _, v in rest], [0] * len(rest), [None] * len(rest)))
    return sorted(pending, key=lambda c: (c.first, c.partition))


def as_dict(rows, key="id"):
    return {r[key]: (r["_kafka_partition"], r["_kafka_offset"], r[DELETED]) for r in rows.to_pylist()}


RECORDS = st.lists(st.tuples(st.integers(0, 2), st.integers(1, 3), st.one_of(st.none(), st.integers(0, 6)),
                             st.booleans(), st.booleans()), max_size=60)


@settings(max_examples=200, deadline=None)
@given(draws=RECORDS, sizes=st.lists(st.integers(1, 7), max_size=5), reduce_at=st.sampled_from([1, 5, 10**9]))
def test_expected_state_keeps_the_last_record_of_each_key_as_a_dict_model_does(draws, sizes, reduce_at):
    """Per record: partition, gap before its offset, key (None: no key), tombstone, dead-lettered; `reduce_at`
    also cuts the changes down to the last per key on the way."""
    next_offset = {0: 0, 1: 0, 2: 0}
    records, letters = [], {}
    for partition, gap, key, tombstone, dead in draws:
        offset = next_offset[partition] + gap - 1
        next_offset[partition] = offset + 1
        kafka_key = None if key is None else json.dumps({"id": key}).encode()
        records.append((partition, offset, kafka_key, None if tombstone else b'{"v": 1}'))
        if dead:
            letters.setdefault(partition, set()).add(offset)
    model = {}
    for partition, offset, kafka_key, value in sorted(records, key=lambda r: (r[0], r[1])):
        if offset in letters.get(partition, ()) or kafka_key is None:
            continue
        model[json.loads(kafka_key)["id"]] = (partition, offset, value is None)
    default, audit_keys.REDUCE_AT = audit_keys.REDUCE_AT, reduce_at
    try:
        result = expected_state(chunks_of(records, sizes), KAFKA_JSON_KEYS, ID, letters)
    finally:
        audit_keys.REDUCE_AT = default
    assert as_dict(result.rows) == model
    assert result.records == len(records)
    assert result.dead_letters == sum(len(o) for o in letters.values())
    assert result.unreadable == sum(1 for p, o, k, _ in records if k is None and o not in letters.get(p, ()))


def one_chunk(keys, values, partition=0):
    n = len(keys)
    return [RecordChunk("t", partition, list(range(n)), keys, values, [0] * n, [None] * n)]


def envelope(op, before=None, after=None, schemas=False):
    event = {"op": op, "before": before, "after": after, "source": {"ts_ms": 1}}
    return json.dumps({"schema": {"type": "struct"}, "payload": event} if schemas else event).encode()


def test_debezium_upserts_deletes_and_skips_truncates_and_bad_envelopes():
    key = [json.dumps({"id": n}).encode() for n in range(6)]
    records = [
        (key[1], envelope("c", after={"id": 1, "v": "a"})),
        (key[2], envelope("r", after={"id": 2, "v": "b"}, schemas=True)),
        (key[1], envelope("u", before={"id": 1}, after={"id": 1, "v": "a2"})),
        (key[2], envelope("d", before={"id": 2, "v": "b"})),
        (key[2], None),  # the tombstone after the delete
        (None, envelope("d", before={"id": 3})),  # no Kafka key: deleted by `before`
        (key[4], envelope("t")),  # truncate: not applied
        (key[5], envelope("x", after={"id": 5})),  # unknown op
        (key[5], envelope("c")),  # no `after`
        (key[0], b"{not json"),
    ]
    result = expected_state(one_chunk(*map(list, zip(*records, strict=True))), UpsertMode("kafka-key", "json",
                                                                                           "debezium"), ID)
    assert as_dict(result.rows) == {1: (0, 2, False), 2: (0, 4, True), 3: (0, 5, True)}
    assert result.unreadable == 4


def test_keys_from_the_value_and_a_tombstone_deleting_by_the_kafka_key():
    keys = [b'{"id": 1}', None, b'{"id": 1}', None, b'{"id": 2}']
    values = [b'{"id": 1, "v": "a"}', b'{"id": 2, "v": "b"}', None, b'{"v": "no id"}', b'{"id": "2", "v": 0}']
    result = expected_state(one_chunk(keys, values), UpsertMode("value", "json"), ID)
    assert as_dict(result.rows) == {1: (0, 2, True), 2: (0, 1, False)}
    assert result.unreadable == 2  # no id; an id of the wrong type


def test_string_keys():
    result = expected_state(one_chunk([b"a", b"b", b"a", b"\xff"], [b"1", b"2", None, b"3"]),
                            UpsertMode("kafka-key", "string"), STRING_KEY)
    assert as_dict(result.rows, "_key") == {"a": (0, 2, True), "b": (0, 1, False)}
    assert result.unreadable == 1
