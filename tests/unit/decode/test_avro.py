import io
import json
import struct

import fastavro
import pyarrow as pa
import pytest

from tabletopic.core.reasons import Reason
from tabletopic.core.records import RecordChunk
from tabletopic.decode.avro import AvroDecoder, WriterSchemas, avro_to_arrow
from tabletopic.decode.base import SchemaDrift

SCHEMA = {
    "type": "record", "name": "Order", "fields": [
        {"name": "id", "type": "long"},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "lines", "type": {"type": "array", "items": {"type": "record", "name": "Line", "fields": [
            {"name": "sku", "type": "string"}, {"name": "qty", "type": "int"}]}}},
        {"name": "attrs", "type": {"type": "map", "values": "string"}},
    ],
}


class FixedRegistry:
    """A registry holding one schema: a seam for this unit test only (integration tests use a real one)."""

    def schema_text(self, schema_id: int) -> str:
        from tabletopic.kafka.registry import UnknownSchemaId

        if schema_id != 7:
            raise UnknownSchemaId(schema_id)
        return json.dumps(SCHEMA)


def wire(record, schema_id=7):
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(SCHEMA), record)
    return struct.pack(">bI", 0, schema_id) + body.getvalue()


def chunk(values):
    n = len(values)
    return RecordChunk("orders", 3, list(range(n)), [None] * n, values, [0] * n, [None] * n)


RECORD = {"id": 1, "note": None, "at": 1767225600000, "lines": [{"sku": "a", "qty": 2}], "attrs": {"k": "v"}}


def decoder():
    return AvroDecoder(WriterSchemas(FixedRegistry()), avro_to_arrow(fastavro.parse_schema(SCHEMA)))  # type: ignore[arg-type]


def test_wire_format_records_decode_to_the_schema():
    table = decoder().decode(chunk([wire(RECORD), wire({**RECORD, "id": 2, "note": "hi"})])).rows
    assert table.column("id").to_pylist() == [1, 2]
    assert table.column("note").to_pylist() == [None, "hi"]
    assert table.column("at").type == pa.timestamp("us", tz="UTC")
    assert table.column("lines").to_pylist()[0] == [{"sku": "a", "qty": 2}]
    assert table.column("attrs").to_pylist()[0] == [("k", "v")]


@pytest.mark.parametrize(
    ("value", "code", "reason"),
    [
        (b"\x01\x00\x00\x00\x07abc", Reason.NOT_WIRE_FORMAT, "magic byte 1"),
        (b"\x00\x00", Reason.NOT_WIRE_FORMAT, "too short"),
        (wire(RECORD, schema_id=99), Reason.UNKNOWN_SCHEMA_ID, "unknown schema id 99"),
        (wire(RECORD)[:-9], Reason.UNDECODABLE_AVRO, "undecodable Avro"),
    ],
)
def test_bad_values_are_named_with_a_reason(value, code, reason):
    decoded = decoder().decode(chunk([wire(RECORD), value, wire(RECORD)]))
    assert decoded.good == [0, 2] and decoded.rows.num_rows == 2
    [bad] = decoded.bad
    assert (bad.index, bad.code) == (1, code)
    assert reason in bad.reason


class TwoVersions:
    """Schema 7 and a later version 8 with a new nested field and `id` widened... or narrowed."""

    def __init__(self, v8):
        self.v8 = v8

    def schema_text(self, schema_id: int) -> str:
        return json.dumps(SCHEMA if schema_id == 7 else self.v8)


def test_a_schema_id_that_adds_a_field_asks_for_evolution_and_a_narrowing_one_is_refused():
    line = {"type": "record", "name": "Line", "fields": [
        {"name": "sku", "type": "string"}, {"name": "qty", "type": "int"},
        {"name": "price", "type": ["null", "double"], "default": None}]}
    lines = {"name": "lines", "type": {"type": "array", "items": line}}
    v8 = {**SCHEMA, "fields": [f if f["name"] != "lines" else lines for f in SCHEMA["fields"]]}
    avro = AvroDecoder(WriterSchemas(TwoVersions(v8)), avro_to_arrow(fastavro.parse_schema(SCHEMA)))  # type: ignore[arg-type]
    with pytest.raises(SchemaDrift) as drift:
        avro.decode(chunk([wire(RECORD), struct.pack(">bI", 0, 8) + wire(RECORD)[5:]]))
    assert "price" in str(drift.value.incoming.field("lines").type)

    narrowed = {**SCHEMA, "fields": [{"name": "id", "type": "string"}, *SCHEMA["fields"][1:]]}
    avro = AvroDecoder(WriterSchemas(TwoVersions(narrowed)),  # type: ignore[arg-type]
                       avro_to_arrow(fastavro.parse_schema(SCHEMA)))
    decoded = avro.decode(chunk([wire(RECORD), struct.pack(">bI", 0, 8) + b"\x02a"]))
    [bad] = decoded.bad
    assert (bad.index, bad.code, bad.schema_id) == (1, Reason.INCOMPATIBLE_SCHEMA, 8)
    assert "id: int64 cannot change to string" in bad.reason


def test_an_avro_union_without_a_column_type_names_the_field():
    from tabletopic.exceptions import SchemaError

    schema = {"type": "record", "name": "R", "fields": [
        {"name": "inner", "type": {"type": "record", "name": "I", "fields": [
            {"name": "either", "type": ["null", "string", "long"]}]}}]}
    with pytest.raises(SchemaError) as caught:
        avro_to_arrow(fastavro.parse_schema(schema))
    assert caught.value.field == "inner.either"
    assert "union" in caught.value.reason


def test_times_of_day_become_microseconds_since_midnight():
    import datetime as dt

    schema = {"type": "record", "name": "T", "fields": [
        {"name": "t", "type": {"type": "long", "logicalType": "time-micros"}},
        {"name": "ms", "type": {"type": "int", "logicalType": "time-millis"}}]}

    class Registry:
        def schema_text(self, schema_id: int) -> str:
            return json.dumps(schema)

    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(schema),
                               {"t": dt.time(1, 2, 3, 4), "ms": dt.time(0, 0, 1, 500000)})
    value = struct.pack(">bI", 0, 1) + body.getvalue()
    avro = AvroDecoder(WriterSchemas(Registry()), avro_to_arrow(fastavro.parse_schema(schema)))  # type: ignore[arg-type]
    row = avro.decode(chunk([value])).rows.to_pylist()[0]
    assert row == {"t": 3723000004, "ms": 1500000}


def test_lowercase_column_names_rename_avro_fields_at_every_level():
    schema = {"type": "record", "name": "R", "fields": [
        {"name": "UserId", "type": "long"},
        {"name": "Lines", "type": {"type": "array", "items": {"type": "record", "name": "L", "fields": [
            {"name": "SKU", "type": ["null", "string"]}]}}},
        {"name": "Attrs", "type": {"type": "map", "values": "string"}}]}

    class Registry:
        def schema_text(self, schema_id: int) -> str:
            return json.dumps(schema)

    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(schema),
                               {"UserId": 7, "Lines": [{"SKU": "a"}], "Attrs": {"Key": "V"}})
    from tabletopic.decode.avro import writer_arrow_schema

    parsed = fastavro.parse_schema(schema)
    avro = AvroDecoder(WriterSchemas(Registry()), writer_arrow_schema(parsed, True), lowercase=True)  # type: ignore[arg-type]
    decoded = avro.decode(chunk([struct.pack(">bI", 0, 1) + body.getvalue()]))
    assert decoded.bad == []
    assert decoded.rows.to_pylist() == [{"userid": 7, "lines": [{"sku": "a"}], "attrs": [("Key", "V")]}]


def referencing_registry():
    """confluent-kafka's in-process registry with schemas fastavro cannot parse: one that references another
    subject's type, an invalid one (fastavro's SchemaParseException) and a Protobuf one."""
    from confluent_kafka.schema_registry import Schema, SchemaReference

    from tabletopic.kafka.registry import SchemaRegistry

    registry = SchemaRegistry("mock://references")
    client = registry._client  # the seam: registering is not tabletopic's business
    line = {"type": "record", "name": "Line", "fields": [{"name": "sku", "type": "string"}]}
    client.register_schema("line-value", Schema(json.dumps(line), "AVRO"))
    referencing = {"type": "record", "name": "Order", "fields": [{"name": "line", "type": "Line"}]}
    with_reference = client.register_schema(
        "orders-value", Schema(json.dumps(referencing), "AVRO", [SchemaReference("Line", "line-value", 1)]))
    plain = client.register_schema("plain-value", Schema(json.dumps(SCHEMA), "AVRO"))
    proto = 'syntax = "proto3"; message M { int64 id = 1; }'
    protobuf = client.register_schema("proto-value", Schema(proto, "PROTOBUF"))
    invalid = {"type": "record", "name": "Bad", "fields": [
        {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "A"]}}]}
    invalid_id = client.register_schema("invalid-value", Schema(json.dumps(invalid), "AVRO"))
    return registry, with_reference, plain, protobuf, invalid_id


@pytest.mark.parametrize("allow_drift", [True, False])
def test_a_writer_schema_fastavro_cannot_read_makes_its_records_dead_letters(allow_drift):
    registry, with_reference, plain, protobuf, invalid = referencing_registry()
    avro = AvroDecoder(WriterSchemas(registry), avro_to_arrow(fastavro.parse_schema(SCHEMA)))
    values = [wire(RECORD, plain), struct.pack(">bI", 0, with_reference) + b"\x02a",
              struct.pack(">bI", 0, protobuf) + b"\x00\x02", struct.pack(">bI", 0, invalid) + b"\x00",
              wire({**RECORD, "id": 2}, plain)]
    for _ in range(2):  # the second time from the cache
        decoded = avro.decode(chunk(values), allow_drift=allow_drift)
        assert decoded.rows.column("id").to_pylist() == [1, 2]
        assert [(b.index, b.code, b.schema_id) for b in decoded.bad] == [
            (1, Reason.INCOMPATIBLE_SCHEMA, with_reference), (2, Reason.INCOMPATIBLE_SCHEMA, protobuf),
            (3, Reason.INCOMPATIBLE_SCHEMA, invalid)]
        assert "schema references are not supported" in decoded.bad[0].reason
        assert "UnknownType" in decoded.bad[0].reason and "Line" in decoded.bad[0].reason
        assert "cannot be read" in decoded.bad[1].reason
        assert "SchemaParseException: All symbols in an enum must be unique" in decoded.bad[2].reason


def test_the_table_is_created_from_the_first_writer_schema_fastavro_can_read():
    from tabletopic.decode.avro import first_writer_schema

    registry, with_reference, plain, _, invalid = referencing_registry()
    writer = first_writer_schema(WriterSchemas(registry), [struct.pack(">bI", 0, invalid) + b"\x00",
                                                           struct.pack(">bI", 0, with_reference) + b"\x02a",
                                                           wire(RECORD, plain)])
    assert writer is not None and writer["name"] == "Order" and len(writer["fields"]) == len(SCHEMA["fields"])
