"""A Debezium event and its Kafka key become one change (upsert `after`, delete by key) or a dead letter
with its reason; bare JSON, Kafka Connect's schema/payload wrapper and decoded Avro look the same here."""

from __future__ import annotations

from typing import Any

import pytest

from tabletopic.core.reasons import Reason
from tabletopic.upsert.debezium import BadEnvelope, Change, ExtraColumns, parse_change

SOURCE = {"connector": "postgresql", "db": "shop", "table": "users", "ts_ms": 1764547200000, "lsn": 24023128}
ROW = {"id": 1, "name": "ada"}
KEY = {"id": 1}


def event(op: str, before: Any = None, after: Any = None, **extra: Any) -> dict[str, Any]:
    return {"before": before, "after": after, "source": SOURCE, "op": op, "ts_ms": 1764547200123, **extra}


def wrapped(payload: Any) -> dict[str, Any]:
    return {"schema": {"type": "struct", "fields": [], "optional": False}, "payload": payload}


@pytest.mark.parametrize("op", ["c", "r", "u"])
@pytest.mark.parametrize("wrap", [lambda v: v, wrapped], ids=["bare", "schema-payload"])
def test_create_read_and_update_upsert_after(op: str, wrap: Any) -> None:
    change = parse_change(wrap(event(op, before={"id": 1, "name": "old"}, after=ROW)), wrap(KEY))
    assert change == Change(op, KEY, ROW)  # type: ignore[arg-type]
    assert isinstance(change, Change) and not change.is_delete


def test_an_upsert_without_a_kafka_key_still_upserts() -> None:
    assert parse_change(event("c", after=ROW), None) == Change("c", None, ROW)


@pytest.mark.parametrize("wrap", [lambda v: v, wrapped], ids=["bare", "schema-payload"])
def test_a_delete_deletes_by_the_kafka_key(wrap: Any) -> None:
    change = parse_change(wrap(event("d", before={"id": 1, "name": "ada"})), wrap(KEY))
    assert change == Change("d", KEY, None)
    assert isinstance(change, Change) and change.is_delete


def test_a_delete_without_a_kafka_key_deletes_by_before() -> None:
    assert parse_change(event("d", before=ROW), None) == Change("d", ROW, None)
    assert parse_change(event("d", before=ROW), None, key_columns=["id"]) == Change("d", KEY, None)


def test_a_delete_falls_back_to_before_when_the_kafka_key_lacks_a_key_column() -> None:
    before = {"tenant": "t1", "id": 1, "name": "ada"}
    change = parse_change(event("d", before=before), KEY, key_columns=["tenant", "id"])
    assert change == Change("d", {"tenant": "t1", "id": 1}, None)


@pytest.mark.parametrize("value", [None, {"schema": None, "payload": None}], ids=["null", "schema-payload-null"])
def test_a_tombstone_deletes_by_the_kafka_key(value: Any) -> None:
    assert parse_change(value, KEY) == Change("d", KEY, None)
    assert parse_change(value, wrapped(KEY), key_columns=["id"]) == Change("d", KEY, None)


def test_the_tombstone_after_a_delete_names_the_same_key_so_deleting_twice_is_harmless() -> None:
    delete, tombstone = parse_change(event("d", before=ROW), KEY), parse_change(None, KEY)
    assert isinstance(delete, Change) and isinstance(tombstone, Change)
    assert delete.key == tombstone.key and delete.is_delete and tombstone.is_delete


@pytest.mark.parametrize(("value", "key", "key_columns"), [
    (None, None, None),  # tombstone without a key
    (None, {}, None),
    (event("d"), None, None),  # no key, no before
    (event("d", before={}), {}, None),
    (event("d", before={"name": "ada"}), {"name": "ada"}, ["id"]),  # neither names the key column
    (event("d", before={"id": None}), {"id": None}, ["id"]),
    (None, {"other": 1}, ["id"]),
], ids=["tombstone", "tombstone-empty-key", "delete", "delete-empty", "delete-no-column", "delete-null", "tomb-col"])
def test_a_delete_with_nothing_to_delete_by_is_a_missing_key(value: Any, key: Any, key_columns: Any) -> None:
    bad = parse_change(value, key, key_columns=key_columns)
    assert isinstance(bad, BadEnvelope) and bad.reason is Reason.MISSING_KEY, bad


def test_a_truncate_is_a_dead_letter_not_an_emptied_table() -> None:
    bad = parse_change(event("t"), None)
    assert isinstance(bad, BadEnvelope) and bad.reason is Reason.TRUNCATE_UNSUPPORTED
    assert "truncate" in bad.detail


@pytest.mark.parametrize(("value", "key", "needle"), [
    (event("x", after=ROW), KEY, "unknown Debezium op 'x'"),
    (event("m", after=ROW), KEY, "unknown Debezium op 'm'"),  # logical decoding message, not a change
    ({"before": None, "after": ROW, "source": SOURCE}, KEY, "unknown Debezium op None"),
    (event("c"), KEY, "without an `after`"),
    (event("u", before=ROW), KEY, "without an `after`"),
    (event("r", after=[1, 2]), KEY, "without an `after`"),
    ([ROW], KEY, "not a Debezium envelope but list"),
    ("c", KEY, "not a Debezium envelope but str"),
    ({"schema": "not a schema", "payload": event("c", after=ROW)}, KEY, "unknown Debezium op None"),
    (event("c", after=ROW), 1, "not an object but int"),
    (event("c", after=ROW), wrapped("k"), "not an object but str"),
])
def test_anything_else_is_a_bad_envelope(value: Any, key: Any, needle: str) -> None:
    bad = parse_change(value, key)
    assert isinstance(bad, BadEnvelope) and bad.reason is Reason.BAD_ENVELOPE, bad
    assert needle in bad.detail


def test_the_extra_columns_asked_for_carry_op_source_timestamp_and_lsn() -> None:
    extra = ExtraColumns(op="_op", source_ts_ms="_source_ts_ms", lsn="_lsn")
    change = parse_change(event("u", after=ROW), KEY, extra=extra)
    assert change == Change("u", KEY, {**ROW, "_op": "u", "_source_ts_ms": 1764547200000, "_lsn": 24023128})
    only_op = parse_change(event("r", after=ROW), KEY, extra=ExtraColumns(op="_op"))
    assert only_op == Change("r", KEY, {**ROW, "_op": "r"})


def test_extra_columns_are_null_when_the_source_does_not_say() -> None:
    extra = ExtraColumns(source_ts_ms="_source_ts_ms", lsn="_lsn")
    mysql = {**event("c", after=ROW), "source": {"connector": "mysql", "ts_ms": 5, "file": "binlog.000003"}}
    assert parse_change(mysql, KEY, extra=extra) == Change("c", KEY, {**ROW, "_source_ts_ms": 5, "_lsn": None})
    no_source = {"op": "c", "after": ROW}
    assert parse_change(no_source, KEY, extra=extra) == Change("c", KEY, {**ROW, "_source_ts_ms": None, "_lsn": None})


def test_an_extra_column_never_overwrites_a_source_column() -> None:
    bad = parse_change(event("c", after={**ROW, "_op": "mine"}), KEY, extra=ExtraColumns(op="_op"))
    assert isinstance(bad, BadEnvelope) and bad.reason is Reason.BAD_ENVELOPE and "'_op'" in bad.detail


def test_the_event_is_not_mutated() -> None:
    value = event("c", after=dict(ROW))
    change = parse_change(value, KEY, extra=ExtraColumns(op="_op"))
    assert value["after"] == ROW and isinstance(change, Change) and change.row is not value["after"]
