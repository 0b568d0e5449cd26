"""Hostile Avro (issue 15): writer schemas no table can take, and small records declaring huge arrays,
become dead letters before any value is made; never an exception out of decode, never a table change."""

from __future__ import annotations

import io
import json
import struct
from decimal import Decimal
from typing import Any

import fastavro
import pyarrow as pa
import pytest

from tabletopic.core.reasons import Reason
from tabletopic.core.records import RecordChunk
from tabletopic.decode import avro as avro_module
from tabletopic.decode.avro import AvroDecoder, WriterSchemas, avro_to_arrow
from tabletopic.decode.avro_batch import _long as varint
from tabletopic.exceptions import SchemaError
from tabletopic.kafka.registry import UnknownSchemaId
from tests.unit.decode.deadline import within

TABLE = {"type": "record", "name": "E", "fields": [{"name": "id", "type": "long"}]}
WRITER_ID = 7


class Registry:
    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema

    def schema_text(self, schema_id: int) -> str:
        if schema_id != WRITER_ID:
            raise UnknownSchemaId(schema_id)
        return json.dumps(self.schema)


def chunk(values: list[bytes | None]) -> RecordChunk:
    n = len(values)
    return RecordChunk("t", 0, list(range(n)), [None] * n, values, [0] * n, [None] * n)


def with_field(field_type: Any) -> dict[str, Any]:
    return {**TABLE, "fields": [*TABLE["fields"], {"name": "xs", "type": field_type}]}


def decoder(writer: dict[str, Any], table: dict[str, Any] = TABLE, max_items: int = 100_000) -> AvroDecoder:
    return AvroDecoder(WriterSchemas(Registry(writer)),  # type: ignore[arg-type]
                       avro_to_arrow(fastavro.parse_schema(table)), max_items=max_items)


def wire(body: bytes) -> bytes:
    return struct.pack(">bI", 0, WRITER_ID) + body


def encoded(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), record)
    return wire(out.getvalue())


def reasons(subject: AvroDecoder, values: list[bytes | None]) -> list[tuple[int, str]]:
    decoded = subject.decode(chunk(values))  # drift allowed: a schema the table cannot take must not ask for a change
    return [(bad.index, bad.code) for bad in decoded.bad]


# --- decimals beyond Iceberg's 38 digits -------------------------------------------------------

@pytest.mark.parametrize("decimal", [
    {"type": "bytes", "logicalType": "decimal", "precision": 40, "scale": 2},
    {"type": "fixed", "name": "Wide", "size": 17, "logicalType": "decimal", "precision": 40, "scale": 0},
])
def test_a_decimal_wider_than_38_digits_makes_dead_letters_naming_field_and_precision(decimal: dict[str, Any]) -> None:
    writer = with_field(decimal)
    value = encoded(writer, {"id": 1, "xs": Decimal("1.23") if decimal["type"] == "bytes" else Decimal(123)})
    subject = decoder(writer)
    decoded = subject.decode(chunk([value]))
    assert [(b.index, b.code) for b in decoded.bad] == [(0, Reason.INCOMPATIBLE_SCHEMA)]
    assert "'xs'" in decoded.bad[0].reason and "precision=40" in decoded.bad[0].reason
    assert decoded.rows.num_rows == 0
    with pytest.raises(SchemaError, match="precision=40"):  # no table is created with such a column either
        avro_to_arrow(fastavro.parse_schema(writer))


# --- array items that take no bytes -----------------------------------------------------------

ZERO_SIZE_ITEMS = [
    {"type": "fixed", "name": "Nothing", "size": 0},
    {"type": "record", "name": "Hollow", "fields": [{"name": "f", "type": {"type": "fixed", "name": "F0", "size": 0}}]},
    {"type": "record", "name": "Empty", "fields": []},
    "null",
]


@pytest.mark.parametrize("items", ZERO_SIZE_ITEMS)
def test_array_items_that_take_no_bytes_are_refused_with_the_schema(items: Any) -> None:
    writer = with_field({"type": "array", "items": items})
    body = varint(1) + varint(10**8) + varint(0)  # 12 bytes declaring 10^8 items
    assert reasons(decoder(writer), [wire(body)]) == [(0, Reason.INCOMPATIBLE_SCHEMA)]
    with pytest.raises(SchemaError, match=r"xs\[\]"):  # nor is a table created with such a column
        avro_to_arrow(fastavro.parse_schema(writer))


def test_zero_size_items_are_refused_even_by_a_table_that_has_their_column() -> None:
    writer = with_field({"type": "array", "items": ZERO_SIZE_ITEMS[0]})
    table = pa.schema([pa.field("id", pa.int64()), pa.field("xs", pa.list_(pa.binary()))])  # made before the fix
    subject = AvroDecoder(WriterSchemas(Registry(writer)), table)  # type: ignore[arg-type]
    body = varint(1) + varint(10**8) + varint(0)
    assert reasons(subject, [wire(body)]) == [(0, Reason.INCOMPATIBLE_SCHEMA)]


# --- too many items ---------------------------------------------------------------------------

LONGS = with_field({"type": "array", "items": "long"})
NESTED = with_field({"type": "array", "items": {"type": "array", "items": "int"}})
MAP = with_field({"type": "map", "values": "boolean"})


def test_a_record_with_more_items_than_max_items_is_a_dead_letter_on_both_paths() -> None:
    subject = decoder(LONGS, LONGS, max_items=20)
    fits = encoded(LONGS, {"id": 1, "xs": list(range(20))})
    over = encoded(LONGS, {"id": 2, "xs": list(range(21))})
    assert subject._decode_batch([fits]) is not None  # the fast path takes the record at the cap
    assert subject._decode_batch([fits, over]) is None  # and leaves the one past it to the per-record path
    decoded = subject.decode(chunk([fits, over]))
    assert [(b.index, b.code) for b in decoded.bad] == [(1, Reason.TOO_MANY_ITEMS)]
    assert "max_items (20)" in decoded.bad[0].reason
    assert decoded.rows.column("id").to_pylist() == [1]


@pytest.mark.parametrize(("writer", "record"), [
    (NESTED, {"id": 1, "xs": [[1, 2, 3]] * 6}),  # 6 + 18 items: every array of the record counts
    (MAP, {"id": 1, "xs": {f"k{i}": True for i in range(25)}}),
])
def test_items_of_all_arrays_and_maps_count_together(writer: dict[str, Any], record: dict[str, Any]) -> None:
    assert reasons(decoder(writer, writer, max_items=20), [encoded(writer, record)]) == [(0, Reason.TOO_MANY_ITEMS)]
    assert reasons(decoder(writer, writer, max_items=30), [encoded(writer, record)]) == []


def test_blocks_with_byte_sizes_count_too() -> None:
    block = b"".join(varint(i) for i in range(15))
    body = varint(1) + (varint(-15) + varint(len(block)) + block) * 2 + varint(0)
    subject = decoder(LONGS, LONGS, max_items=20)
    assert reasons(subject, [wire(body)]) == [(0, Reason.TOO_MANY_ITEMS)]
    assert reasons(decoder(LONGS, LONGS, max_items=30), [wire(body)]) == []


def test_the_refusal_comes_before_any_value_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decoding(*args: Any) -> Any:
        raise AssertionError("fastavro was asked to decode a record past max_items")

    monkeypatch.setattr(avro_module.fastavro, "schemaless_reader", no_decoding)
    # 8 MiB of one-byte items: past the default cap (100,000), refused from its block count alone.
    body = varint(1) + varint(8 * 2**20) + bytes(8 * 2**20) + varint(0)
    assert reasons(decoder(LONGS, LONGS), [wire(body)]) == [(0, Reason.TOO_MANY_ITEMS)]


def test_a_block_declaring_more_items_than_bytes_left_is_undecodable_without_walking_them() -> None:
    body = varint(1) + varint(10**15) + bytes(64)
    assert reasons(decoder(LONGS, LONGS, max_items=20), [wire(body)]) == [(0, Reason.UNDECODABLE_AVRO)]


def run_deep_recursive_record() -> list[tuple[int, str]]:
    node = {"type": "record", "name": "Node", "fields": [
        {"name": "id", "type": "long"}, {"name": "next", "type": ["null", "Node"]}]}
    body = varint(1) + (varint(1) + varint(1)) * 200_000 + varint(0)
    return reasons(decoder(node), [wire(body)])


def test_a_deeply_recursive_record_is_a_dead_letter_not_a_crash() -> None:
    """fastavro overflows the C stack on 200,000 nested records (SIGSEGV): the schema must be refused
    before a body of it is read. In a process of its own, so a crash fails the test, not the run."""
    assert within(120, run_deep_recursive_record) == [(0, Reason.INCOMPATIBLE_SCHEMA)]


def test_a_writer_schema_the_planning_fails_on_makes_dead_letters_not_an_exception(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def failing(*args: Any) -> Any:
        raise ValueError("something nobody foresaw")

    monkeypatch.setattr(avro_module, "plan_evolution", failing)
    decoded = decoder(TABLE).decode(chunk([encoded(TABLE, {"id": 1})]))
    assert [(b.index, b.code) for b in decoded.bad] == [(0, Reason.INCOMPATIBLE_SCHEMA)]
    assert "ValueError: something nobody foresaw" in decoded.bad[0].reason
