"""One upsert commit writes, per key, the last change of the batch (a delete wins by deleting) and deletes
every key it touches; null keys are rejected. The Arrow version equals the per-record model."""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tabletopic.core.metadata import OFFSET, PARTITION
from tabletopic.upsert.changes import UpsertPlan, plan_upsert, plan_upsert_reference

PLANS = [plan_upsert, plan_upsert_reference]
INT64 = pa.int64()


def batch(records: list[tuple[Any, int, int, str | None]], key_type: pa.DataType = INT64) -> pa.Table:
    """(key, partition, offset, value) per record."""
    return pa.table({
        "id": pa.array([r[0] for r in records], key_type),
        "v": pa.array([r[3] for r in records], pa.large_string()),
        PARTITION: pa.array([r[1] for r in records], pa.int32()),
        OFFSET: pa.array([r[2] for r in records], pa.int64()),
    })


def values(plan: UpsertPlan) -> list[tuple[Any, str]]:
    return [(r["id"], r["v"]) for r in plan.rows.to_pylist()]


def deleted(plan: UpsertPlan) -> list[Any]:
    return sorted(r["id"] for r in plan.delete_keys.to_pylist())


@pytest.mark.parametrize("plan_upsert", PLANS)
def test_the_last_offset_of_a_key_wins_and_every_touched_key_is_deleted(plan_upsert: Any) -> None:
    table = batch([(1, 0, 10, "a"), (2, 0, 11, "b"), (1, 0, 12, "c"), (3, 0, 13, "d")])
    plan = plan_upsert(table, ["id"], [False] * 4)
    assert values(plan) == [(2, "b"), (1, "c"), (3, "d")]
    assert deleted(plan) == [1, 2, 3]
    assert plan.rows.schema == table.schema
    assert plan.delete_keys.schema == pa.schema([pa.field("id", pa.int64())])
    assert plan.rejected == []


@pytest.mark.parametrize("plan_upsert", PLANS)
def test_a_last_delete_writes_no_row_but_deletes_the_key(plan_upsert: Any) -> None:
    table = batch([(1, 0, 1, "a"), (1, 0, 2, None), (2, 0, 3, None)])
    plan = plan_upsert(table, ["id"], [False, True, True])
    assert values(plan) == []
    assert deleted(plan) == [1, 2]


@pytest.mark.parametrize("plan_upsert", PLANS)
def test_an_upsert_after_a_delete_brings_the_key_back(plan_upsert: Any) -> None:
    table = batch([(1, 0, 1, "a"), (1, 0, 2, None), (1, 0, 3, "b")])
    plan = plan_upsert(table, ["id"], [False, True, False])
    assert values(plan) == [(1, "b")]
    assert deleted(plan) == [1]


@pytest.mark.parametrize("plan_upsert", PLANS)
def test_offset_order_decides_not_the_order_of_arrival(plan_upsert: Any) -> None:
    table = batch([(1, 0, 7, "late"), (1, 0, 3, "early"), (2, 0, 9, None), (2, 0, 4, "x")])
    plan = plan_upsert(table, ["id"], [False, False, True, False])
    assert values(plan) == [(1, "late")]
    assert deleted(plan) == [1, 2]


@pytest.mark.parametrize("plan_upsert", PLANS)
def test_a_key_from_several_partitions_is_decided_by_partition_then_offset_and_counted(plan_upsert: Any) -> None:
    table = batch([(1, 1, 0, "p1"), (1, 0, 99, "p0"), (2, 0, 5, "only p0")])
    plan = plan_upsert(table, ["id"], [False, False, False])
    assert values(plan) == [(1, "p1"), (2, "only p0")]
    assert plan.keys_in_several_partitions == 1


@pytest.mark.parametrize("plan_upsert", PLANS)
def test_a_record_delivered_twice_in_one_batch_is_one_row(plan_upsert: Any) -> None:
    table = batch([(1, 0, 5, "a"), (1, 0, 5, "a"), (1, 0, 4, "old")])
    plan = plan_upsert(table, ["id"], [False, False, False])
    assert plan.rows.to_pylist() == table.slice(1, 1).to_pylist()


@pytest.mark.parametrize("plan_upsert", PLANS)
def test_null_keys_are_rejected_and_delete_nothing(plan_upsert: Any) -> None:
    table = pa.table({
        "a": pa.array([1, None, 1, 1], pa.int64()),
        "b": pa.array(["x", "x", None, "y"], pa.large_string()),
        PARTITION: pa.array([0, 0, 0, 0], pa.int32()),
        OFFSET: pa.array([1, 2, 3, 4], pa.int64()),
    })
    plan = plan_upsert(table, ["a", "b"], [False, True, True, False])
    assert plan.rejected == [1, 2]
    assert plan.rows.column("b").to_pylist() == ["x", "y"]
    assert sorted(plan.delete_keys.to_pylist(), key=repr) == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}]


@pytest.mark.parametrize("plan_upsert", PLANS)
def test_a_composite_key_differs_by_any_of_its_columns(plan_upsert: Any) -> None:
    day = datetime.date(2026, 1, 1)
    table = pa.table({
        "d": pa.array([day, day, day, day], pa.date32()),
        "n": pa.array([Decimal("1.5"), Decimal("1.5"), Decimal("2.5"), Decimal("1.5")], pa.decimal128(5, 1)),
        "flag": [True, False, True, True],
        "raw": pa.array([b"k", b"k", b"k", b"k"], pa.binary()),
        PARTITION: pa.array([0, 0, 0, 0], pa.int32()),
        OFFSET: pa.array([1, 2, 3, 4], pa.int64()),
    })
    plan = plan_upsert(table, ["d", "n", "flag", "raw"], [False, False, False, False])
    assert plan.rows.column(OFFSET).to_pylist() == [2, 3, 4]
    assert plan.delete_keys.num_rows == 3


@pytest.mark.parametrize("plan_upsert", PLANS)
def test_an_empty_batch_writes_nothing(plan_upsert: Any) -> None:
    plan = plan_upsert(batch([]), ["id"], [])
    assert plan.rows.num_rows == 0 and plan.delete_keys.num_rows == 0 and plan.rejected == []


@pytest.mark.parametrize("plan_upsert", PLANS)
def test_the_mask_may_be_a_column(plan_upsert: Any) -> None:
    table = batch([(1, 0, 1, "a"), (1, 0, 2, None)])
    plan = plan_upsert(table, ["id"], pa.chunked_array([[False], [True]]))
    assert values(plan) == [] and deleted(plan) == [1]


@pytest.mark.parametrize(("table", "keys", "mask", "message"), [
    (batch([(1.5, 0, 1, "a")], pa.float64()), ["id"], [False], "cannot be an Iceberg identifier"),
    (batch([(1, 0, 1, "a")]), ["nope"], [False], "'nope' is missing"),
    (batch([(1, 0, 1, "a")]).drop_columns([OFFSET]), ["id"], [False], f"'{OFFSET}' is missing"),
    (batch([(1, 0, 1, "a")]), [], [False], "at least one key column"),
    (batch([(1, 0, 1, "a")]), ["id"], [False, True], "one true/false per row"),
    (batch([(1, 0, 1, "a")]), ["id"], [None], "one true/false per row"),
    (batch([(1, 0, 1, "a")]), ["id"], pa.array([0], pa.int8()), "one true/false per row"),
])
@pytest.mark.parametrize("plan_upsert", PLANS)
def test_a_batch_the_plan_cannot_key_is_refused(
    plan_upsert: Any, table: pa.Table, keys: list[str], mask: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        plan_upsert(table, keys, mask)


KEY_KINDS = [  # (arrow type, a few values so keys repeat)
    (pa.int64(), st.sampled_from([0, 1, 2, -(2**63)])),
    (pa.int32(), st.sampled_from([0, 7])),
    (pa.large_string(), st.sampled_from(["", "a", "é"])),
    (pa.string(), st.sampled_from(["x", "y"])),
    (pa.binary(), st.sampled_from([b"", b"\x00", b"k"])),
    (pa.bool_(), st.booleans()),
    (pa.date32(), st.sampled_from([datetime.date(1970, 1, 1), datetime.date(2026, 12, 1)])),
    (pa.timestamp("us", tz="UTC"), st.sampled_from([datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)])),
    (pa.decimal128(10, 2), st.sampled_from([Decimal("0.00"), Decimal("-1.25")])),
]


@st.composite
def batches(draw: st.DrawFn) -> tuple[pa.Table, list[str], list[bool]]:
    kinds = draw(st.lists(st.sampled_from(range(len(KEY_KINDS))), min_size=1, max_size=3))
    names = [f"k{i}" for i in range(len(kinds))]
    size = draw(st.integers(0, 40))
    partitions = draw(st.lists(st.integers(0, 2), min_size=size, max_size=size))
    next_offset = {p: draw(st.integers(0, 5)) for p in range(3)}
    offsets = []
    for p in partitions:  # increasing within a partition, with gaps as in a compacted topic
        offsets.append(next_offset[p])
        next_offset[p] += draw(st.integers(1, 3))
    columns: dict[str, pa.Array] = {}
    for name, kind in zip(names, kinds, strict=True):
        type_, strategy = KEY_KINDS[kind]
        drawn = draw(st.lists(strategy, min_size=size, max_size=size))
        nulls = draw(st.lists(st.integers(0, 9), min_size=size, max_size=size))  # about one null in ten
        columns[name] = pa.array([None if n == 0 else v for v, n in zip(drawn, nulls, strict=True)], type_)
    columns["v"] = pa.array(range(size), pa.int64())
    columns[PARTITION] = pa.array(partitions, pa.int32())
    columns[OFFSET] = pa.array(offsets, pa.int64())
    table = pa.table(columns)
    order = draw(st.permutations(range(size)))  # arrival order need not be offset order
    table = table.take(pa.array(order, pa.int64()))
    deletes = draw(st.lists(st.booleans(), min_size=size, max_size=size))
    return table, names, deletes


@settings(max_examples=400, deadline=None)
@given(batches())
def test_the_arrow_plan_equals_the_per_record_model(case: tuple[pa.Table, list[str], list[bool]]) -> None:
    table, keys, deletes = case
    got, want = plan_upsert(table, keys, deletes), plan_upsert_reference(table, keys, deletes)
    assert got.rows.equals(want.rows)
    assert sorted(got.delete_keys.to_pylist(), key=repr) == sorted(want.delete_keys.to_pylist(), key=repr)
    assert got.delete_keys.schema == want.delete_keys.schema
    assert got.rejected == want.rejected
    assert got.keys_in_several_partitions == want.keys_in_several_partitions


@settings(max_examples=200, deadline=None)
@given(batches(), st.data())
def test_deleting_the_keys_then_adding_the_rows_equals_applying_each_change_in_offset_order(
    case: tuple[pa.Table, list[str], list[bool]], data: st.DataObject
) -> None:
    """What an equality delete plus the new rows (same sequence number) do to the table, on a dict."""
    table, keys, deletes = case
    records = table.to_pylist()
    touched = sorted({key for r in records if None not in (key := tuple(r[k] for k in keys))}, key=repr)
    # Rows of earlier commits: some of the batch's keys, and one key the batch does not touch.
    state: dict[tuple[Any, ...], Any] = {key: "older" for key in touched if data.draw(st.booleans())}
    state[("untouched",)] = "older"
    expected = dict(state)
    for i in sorted(range(len(records)), key=lambda i: (records[i][PARTITION], records[i][OFFSET])):
        key = tuple(records[i][k] for k in keys)
        if None in key:
            continue
        if deletes[i]:
            expected.pop(key, None)
        else:
            expected[key] = records[i]["v"]
    plan = plan_upsert(table, keys, deletes)
    for row in plan.delete_keys.to_pylist():
        state.pop(tuple(row[k] for k in keys), None)
    for row in plan.rows.to_pylist():
        key = tuple(row[k] for k in keys)
        assert key not in state  # one row per key
        state[key] = row["v"]
    assert state == expected
