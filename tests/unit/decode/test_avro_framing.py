"""The native batch path only takes bodies that are exactly one record of their schema: a body with
bytes to spare (a newer version's record framed with an older id, a stray byte) used to make the
native reader spin forever or read its neighbour's bytes as the next record."""

from __future__ import annotations

import io
import struct
from datetime import UTC, date, datetime
from typing import Any

import fastavro
import pytest

from tabletopic.core.records import RecordChunk
from tabletopic.decode import avro_batch
from tabletopic.decode.avro import AvroDecoder, WriterSchemas, avro_to_arrow
from tabletopic.decode.avro_framing import Unframed, check_framing
from tests.unit.decode.deadline import within
from tests.unit.decode.test_avro_batch import Registry

V1 = {"type": "record", "name": "R", "fields": [{"name": "id", "type": "long"}, {"name": "s", "type": "string"}]}
V2 = {**V1, "fields": [*V1["fields"], {"name": "extra", "type": "long"}]}  # a later version: one more field
EVERY = {
    "type": "record", "name": "E", "fields": [
        {"name": "id", "type": "long"}, {"name": "n", "type": "int"}, {"name": "ok", "type": "boolean"},
        {"name": "f", "type": "float"}, {"name": "d", "type": "double"}, {"name": "b", "type": "bytes"},
        {"name": "note", "type": ["null", "string"]},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "us", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "xs", "type": {"type": "array", "items": "double"}},
        {"name": "lines", "type": {"type": "array", "items": {"type": "record", "name": "L", "fields": [
            {"name": "q", "type": "int"}, {"name": "k", "type": ["null", "string"]}]}}},
    ],
}


def body(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), record)
    return out.getvalue()


def framed(schema_id: int, payload: bytes) -> bytes:
    return struct.pack(">bI", 0, schema_id) + payload


def decode_summary(schemas: dict[int, dict[str, Any]], table: dict[str, Any], values: list[bytes | None]) -> Any:
    """What the decoder makes of a batch, in plain data (runs in a spawned process)."""
    subject = AvroDecoder(WriterSchemas(Registry(schemas)), avro_to_arrow(fastavro.parse_schema(table)))  # type: ignore[arg-type]
    n = len(values)
    decoded = subject.decode(RecordChunk("t", 0, list(range(n)), [None] * n, values, [0] * n, [None] * n))
    reference = subject._decode_each(values)
    return {
        "rows": decoded.rows.to_pylist(), "good": decoded.good,
        "bad": [(b.index, str(b.code), b.reason) for b in decoded.bad],
        "reference_rows": reference.rows.to_pylist(), "reference_bad": [(b.index, str(b.code)) for b in reference.bad],
    }


@pytest.mark.parametrize("odd", ["a v2 record framed with v1's id", "one stray trailing byte"])
@pytest.mark.parametrize("where", [1, 2])  # in the middle of the batch, and last
def test_a_body_with_bytes_to_spare_is_a_dead_letter_and_moves_no_row(odd: str, where: int) -> None:
    values: list[bytes | None] = [framed(1, body(V1, {"id": n, "s": f"v{n}"})) for n in range(3)]
    if odd.startswith("a v2"):
        values[where] = framed(1, body(V2, {"id": where, "s": f"v{where}", "extra": 7}))
    else:
        values[where] = values[where] + b"\x00"  # type: ignore[operator]
    summary = within(120, decode_summary, {1: V1}, V1, values)
    kept = [n for n in range(3) if n != where]
    assert summary["rows"] == [{"id": n, "s": f"v{n}"} for n in kept]
    assert summary["good"] == kept
    assert [(index, code) for index, code, _ in summary["bad"]] == [(where, "undecodable_avro")]
    assert "bytes after the record" in summary["bad"][0][2]
    assert summary["rows"] == summary["reference_rows"]


def test_a_stray_byte_never_shifts_the_next_record_into_a_garbage_row() -> None:
    """The stray 0x01 and the next body read as one record {'id': -1, 's': '\\x04v3'} used to land
    under the next record's offset, with no dead letter."""
    values: list[bytes | None] = [framed(1, body(V1, {"id": n, "s": f"v{n}"})) for n in range(4)]
    values[2] = values[2] + b"\x01"  # type: ignore[operator]
    summary = within(120, decode_summary, {1: V1}, V1, values)
    assert summary["rows"] == [{"id": n, "s": f"v{n}"} for n in (0, 1, 3)]
    assert [(index, code) for index, code, _ in summary["bad"]] == [(2, "undecodable_avro")]


def test_bodies_written_by_fastavro_are_framed_exactly() -> None:
    record = {"id": -5, "n": -(2**31), "ok": True, "f": 1.5, "d": -2.25, "b": b"\x00\xff", "note": "x",
              "at": datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC), "us": datetime(1, 1, 1, tzinfo=UTC),
              "day": date(1, 1, 1), "tags": ["a", "é" * 70, ""], "xs": [1.0, 2.0],
              "lines": [{"q": 2**31 - 1, "k": None}, {"q": 0, "k": "k" * 200}]}
    empty = {**record, "note": None, "tags": [], "xs": [], "lines": [], "b": b""}
    check_framing(fastavro.parse_schema(EVERY), [body(EVERY, record), body(EVERY, empty)] * 3)


def _varint(n: int) -> bytes:
    return avro_batch._long(n)


@pytest.mark.parametrize(("payload", "why"), [
    (b"\x02\x02a\x00", "bytes after the record"),
    (b"\x02\x04a", "past the end"),
    (b"\x02" + _varint(-1) + b"a", "negative length"),
    (b"\x02" + _varint(2**62), "past the end"),
    (b"\x02" + b"\xff" * 10 + b"\x01", "wider than 64 bits"),
])
def test_framing_faults_are_refused(payload: bytes, why: str) -> None:
    with pytest.raises(Unframed, match=why):
        check_framing(fastavro.parse_schema(V1), [body(V1, {"id": 1, "s": "a"}), payload])


@pytest.mark.parametrize(("field", "payload", "why"), [
    ({"type": "int"}, _varint(2**31), "wider than 32 bits"),
    ({"type": "boolean"}, b"\x02", "boolean byte"),
    ({"type": ["null", "long"]}, _varint(2), "union branch"),
    ({"type": ["null", "long"]}, _varint(-1), "union branch"),
    ({"type": {"type": "array", "items": "long"}}, _varint(-1) + _varint(1) + b"\x02\x00", "byte count"),
    ({"type": {"type": "array", "items": "long"}}, _varint(5) + b"\x02\x00", "more array items than bytes"),
    ({"type": {"type": "long", "logicalType": "timestamp-millis"}}, _varint(253_402_300_800_000), "years 1-9999"),
    ({"type": {"type": "long", "logicalType": "timestamp-micros"}}, _varint(-62_135_596_800_000_001),
     "years 1-9999"),
    ({"type": {"type": "int", "logicalType": "date"}}, _varint(2_932_897), "years 1-9999"),
])
def test_values_fastavro_reads_otherwise_are_refused(field: dict[str, Any], payload: bytes, why: str) -> None:
    schema = {"type": "record", "name": "One", "fields": [{"name": "x", **field}]}
    """Each of these the native reader reads otherwise than fastavro, or not at all: the per-record path decides."""
    with pytest.raises(Unframed, match=why):
        check_framing(fastavro.parse_schema(schema), [payload])


def test_the_date_and_timestamp_bounds_are_fastavros() -> None:
    """The walk's bounds are exactly where fastavro's datetimes end (one step in is read, one out fails)."""
    for logical, low, high in [("timestamp-millis", -62_135_596_800_000, 253_402_300_799_999),
                               ("timestamp-micros", -62_135_596_800_000_000, 253_402_300_799_999_999),
                               ("date", -719_162, 2_932_896)]:
        kind = "int" if logical == "date" else "long"
        schema = fastavro.parse_schema({"type": "record", "name": "T", "fields": [
            {"name": "x", "type": {"type": kind, "logicalType": logical}}]})
        for value in (low, high):
            fastavro.schemaless_reader(io.BytesIO(_varint(value)), schema, None)
            check_framing(schema, [_varint(value)])
        for value in (low - 1, high + 1):
            with pytest.raises((OverflowError, ValueError)):
                fastavro.schemaless_reader(io.BytesIO(_varint(value)), schema, None)
            with pytest.raises(Unframed):
                check_framing(schema, [_varint(value)])


def test_long_arrays_give_up_the_walk_instead_of_taking_long() -> None:
    schema = {"type": "record", "name": "A", "fields": [{"name": "tags", "type": {"type": "array", "items": "string"}}]}
    with pytest.raises(Unframed, match="too long to walk"):
        check_framing(fastavro.parse_schema(schema), [body(schema, {"tags": ["t"] * 100})])


def test_arrays_of_items_that_take_no_bytes_are_not_batchable() -> None:
    empty = {"type": "record", "name": "Nothing", "fields": []}
    for items in ("null", empty):
        schema = {"type": "record", "name": "A", "fields": [{"name": "xs", "type": {"type": "array", "items": items}}]}
        assert not avro_batch.batchable(fastavro.parse_schema(schema))
