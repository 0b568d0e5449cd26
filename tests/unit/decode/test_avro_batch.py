"""The native batch path and fastavro's per-record path give the same table, value for value;
batches the batch path must not take go the per-record way and still name their bad records."""

from __future__ import annotations

import io
import json
import random
import struct
import subprocess
import sys
from typing import Any

import fastavro
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tabletopic.core.reasons import Reason
from tabletopic.core.records import RecordChunk
from tabletopic.decode import avro_batch
from tabletopic.decode.avro import AvroDecoder, WriterSchemas, avro_to_arrow
from tabletopic.kafka.registry import UnknownSchemaId

# Every type the batch path takes, nested and nullable where Avro allows it.
EVERY_TYPE = {
    "type": "record", "name": "Event", "namespace": "bench", "fields": [
        {"name": "id", "type": "long"},
        {"name": "small", "type": "int"},
        {"name": "ok", "type": "boolean"},
        {"name": "ratio", "type": "float"},
        {"name": "amount", "type": "double"},
        {"name": "name", "type": "string"},
        {"name": "blob", "type": "bytes"},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "late", "type": ["long", "null"]},
        {"name": "at_ms", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "at_us", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "maybe_at", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}], "default": None},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "user", "type": {"type": "record", "name": "User", "fields": [
            {"name": "uid", "type": "long"}, {"name": "country", "type": ["null", "string"]},
            {"name": "scores", "type": {"type": "array", "items": "double"}}]}},
        {"name": "lines", "type": {"type": "array", "items": {"type": "record", "name": "Line", "fields": [
            {"name": "sku", "type": "string"}, {"name": "qty", "type": "int"}]}}},
        {"name": "maybe_user", "type": ["null", {"type": "record", "name": "Other", "fields": [
            {"name": "x", "type": "int"}]}], "default": None},
    ],
}
SCHEMA_ID = 11


class Registry:
    """One schema by id: a seam for this unit test (integration tests use a real registry)."""

    def __init__(self, schemas: dict[int, dict[str, Any]]) -> None:
        self.schemas = schemas

    def schema_text(self, schema_id: int) -> str:
        if schema_id not in self.schemas:
            raise UnknownSchemaId(schema_id)
        return json.dumps(self.schemas[schema_id])


def record(rng: random.Random, n: int) -> dict[str, Any]:
    maybe = rng.random() < 0.3
    return {
        "id": n, "small": rng.randint(-2**31, 2**31 - 1), "ok": rng.random() < 0.5, "ratio": rng.random(),
        "amount": rng.uniform(-1e9, 1e9), "name": f"näme-{n}-" + "x" * rng.randint(0, 40),
        "blob": rng.randbytes(rng.randint(0, 8)), "note": None if maybe else f"note {n}",
        "late": None if rng.random() < 0.5 else rng.randint(0, 2**62),
        "at_ms": rng.randint(0, 2**41), "at_us": rng.randint(0, 2**50),
        "maybe_at": None if maybe else rng.randint(0, 2**41), "day": rng.randint(0, 30_000),
        "tags": [f"t{i}" for i in range(rng.randint(0, 4))],
        "user": {"uid": rng.randint(0, 2**40), "country": None if maybe else "DE",
                 "scores": [rng.random() for _ in range(rng.randint(0, 3))]},
        "lines": [{"sku": f"s{i}", "qty": i} for i in range(rng.randint(0, 3))],
        "maybe_user": None if maybe else {"x": n % 1000},
    }


def wire(schema: dict[str, Any], value: dict[str, Any], schema_id: int) -> bytes:
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(schema), value)
    return struct.pack(">bI", 0, schema_id) + body.getvalue()


def chunk(values: list[bytes | None]) -> RecordChunk:
    n = len(values)
    return RecordChunk("t", 0, list(range(n)), [None] * n, values, [0] * n, [None] * n)


def decoder(schemas: dict[int, dict[str, Any]], table_schema: dict[str, Any]) -> AvroDecoder:
    return AvroDecoder(WriterSchemas(Registry(schemas)),  # type: ignore[arg-type]
                       avro_to_arrow(fastavro.parse_schema(table_schema)))


def test_the_batch_path_equals_the_per_record_path_value_for_value() -> None:
    rng = random.Random(7)
    values: list[bytes | None] = [wire(EVERY_TYPE, record(rng, n), SCHEMA_ID) for n in range(3000)]
    subject = decoder({SCHEMA_ID: EVERY_TYPE}, EVERY_TYPE)
    batch = subject._decode_batch(values)
    assert batch is not None, "EVERY_TYPE must be taken by the batch path"
    each = subject._decode_each(values)
    assert each.bad == []
    assert batch.schema.equals(each.rows.schema)
    assert batch.equals(each.rows)
    assert subject.decode(chunk(values)).rows.equals(each.rows)


def test_mixed_schema_versions_keep_the_records_order() -> None:
    older = {**EVERY_TYPE, "fields": [f for f in EVERY_TYPE["fields"] if f["name"] not in ("late", "maybe_user")]}
    rng = random.Random(3)
    values: list[bytes | None] = []
    for n in range(400):
        value = record(rng, n)
        values.append(wire(EVERY_TYPE, value, SCHEMA_ID) if n % 3 else
                      wire(older, {k: v for k, v in value.items() if k not in ("late", "maybe_user")}, 12))
    subject = decoder({SCHEMA_ID: EVERY_TYPE, 12: older}, EVERY_TYPE)
    batch = subject._decode_batch(values)
    assert batch is not None
    assert batch.column("id").to_pylist() == list(range(400))
    assert batch.equals(subject._decode_each(values).rows)


@pytest.mark.parametrize("field", [
    {"name": "attrs", "type": {"type": "map", "values": "string"}},
    {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"]}},
    {"name": "hash", "type": {"type": "fixed", "name": "Hash", "size": 4}},
    {"name": "when", "type": {"type": "int", "logicalType": "time-millis"}},
    {"name": "uid", "type": {"type": "string", "logicalType": "uuid"}},
    {"name": "again", "type": "bench.User"},
])
def test_schemas_with_other_types_go_the_per_record_way(field: dict[str, Any]) -> None:
    schema = {**EVERY_TYPE, "fields": [*EVERY_TYPE["fields"], field]}
    assert not avro_batch.batchable(fastavro.parse_schema(schema))


def test_a_bad_record_sends_the_batch_the_per_record_way_which_names_it() -> None:
    rng = random.Random(5)
    values: list[bytes | None] = [wire(EVERY_TYPE, record(rng, n), SCHEMA_ID) for n in range(50)]
    good = values[20]
    assert good is not None
    values[20] = good[:12]  # truncated body
    subject = decoder({SCHEMA_ID: EVERY_TYPE}, EVERY_TYPE)
    assert subject._decode_batch(values) is None
    decoded = subject.decode(chunk(values))
    assert [b.index for b in decoded.bad] == [20]
    assert decoded.bad[0].code == Reason.UNDECODABLE_AVRO
    assert decoded.rows.num_rows == 49


def test_container_frames_the_bodies_as_one_block() -> None:
    schema = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "long"}]}
    bodies = [wire(schema, {"a": n}, 1)[5:] for n in range(5)]
    rows = list(fastavro.reader(io.BytesIO(avro_batch.container(json.dumps(schema), bodies))))
    assert rows == [{"a": n} for n in range(5)]
    assert pa.Table.from_pylist(rows).num_rows == 5


def _large(data_type: pa.DataType) -> pa.DataType:
    """A column type as pyiceberg's Schema.as_arrow gives it (large strings, binaries and lists)."""
    if pa.types.is_string(data_type):
        return pa.large_string()
    if pa.types.is_binary(data_type):
        return pa.large_binary()
    if pa.types.is_list(data_type):
        return pa.large_list(pa.field("element", _large(data_type.value_type), nullable=False))
    if pa.types.is_struct(data_type):
        return pa.struct([pa.field(f.name, _large(f.type)) for f in data_type])
    return data_type


def test_the_batch_path_equals_the_per_record_path_in_the_tables_large_types() -> None:
    rng = random.Random(11)
    values: list[bytes | None] = [wire(EVERY_TYPE, record(rng, n), SCHEMA_ID) for n in range(500)]
    small = avro_to_arrow(fastavro.parse_schema(EVERY_TYPE))
    subject = AvroDecoder(WriterSchemas(Registry({SCHEMA_ID: EVERY_TYPE})),  # type: ignore[arg-type]
                          pa.schema([pa.field(f.name, _large(f.type)) for f in small]))
    batch = subject._decode_batch(values)
    assert batch is not None
    each = subject._decode_each(values)
    assert batch.schema.equals(each.rows.schema)
    assert batch.equals(each.rows)


@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.binary(max_size=20)), min_size=1, max_size=30),
       st.data())
@settings(max_examples=200, deadline=None)
def test_frames_find_each_values_schema_id_and_body(
        records: list[tuple[int, bytes]], data: st.DataObject) -> None:
    values: list[bytes | None] = [struct.pack(">bI", 0, schema_id) + body for schema_id, body in records]
    framed = avro_batch.frames(values)
    assert framed is not None
    assert framed.schema_ids.tolist() == [schema_id for schema_id, _ in records]
    block, sizes = framed.bodies()
    assert block == b"".join(body for _, body in records)
    assert sizes.tolist() == [len(body) for _, body in records]
    rows = sorted(data.draw(st.sets(st.integers(0, len(records) - 1), min_size=1)))
    block, sizes = framed.bodies(np.array(rows, dtype=np.int64))
    assert block == b"".join(records[i][1] for i in rows)
    assert sizes.tolist() == [len(records[i][1]) for i in rows]


@pytest.mark.parametrize("odd", [None, b"", b"\x00\x00\x00\x01", b"\x01\x00\x00\x00\x01body"])
def test_frames_refuse_a_batch_with_a_value_not_in_the_wire_format(odd: bytes | None) -> None:
    good = struct.pack(">bI", 0, 1) + b"body"
    assert avro_batch.frames([good, odd, good]) is None


def test_the_native_reader_does_not_load_polars() -> None:
    """polars (~30 MiB a process, with its own allocator and threads) only wraps what the reader gives."""
    schema = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "long"}, {"name": "s", "type": "string"}]}
    script = f"""
import json, sys, fastavro
from tabletopic.decode import avro_batch
schema = json.loads({json.dumps(json.dumps(schema))})
bodies = [bytes([n * 2, 4]) + b"hi" for n in range(3)]  # zig-zag: n, then the length 2
table = avro_batch.read_batch(json.dumps(schema), fastavro.parse_schema(schema), bodies)
assert table.to_pylist() == [{{"a": n, "s": "hi"}} for n in range(3)], table.to_pylist()
print("polars" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
