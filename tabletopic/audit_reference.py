"""The reference decode of `audit --values`: every record on its own, by the plainest path, into the table's columns.

JSON: `json.loads` per value, each value checked against its column's type (a float never
truncated into a long column, a number never a string), then Arrow rows from the Python
objects; types that have no plain JSON form (timestamps, dates, decimals, bytes) are parsed
by `pyarrow.json`, one value at a time. Avro: the writer's own per-record path (fastavro, one
value at a time). Protobuf: the writer's per-record path (python protobuf, one value at a time),
never the native batch reader. Raw: the bytes. The Kafka metadata columns are built from the records here
too, not by the writer's code.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.json as pa_json

from tabletopic.core import metadata
from tabletopic.core.records import RecordChunk
from tabletopic.decode.avro import AvroDecoder, WriterSchemas
from tabletopic.decode.json_check import Misfit, NeedsParser, json_checker, parser_type
from tabletopic.decode.json_guard import is_too_deep, too_deep_message
from tabletopic.decode.json_schema import JsonSchemaDecoder, JsonSchemas
from tabletopic.decode.names import NameCollision, lowercase_json
from tabletopic.decode.protobuf import ProtobufDecoder
from tabletopic.decode.protobuf_schema import ProtobufSchemas
from tabletopic.decode.renames import Renames, rename_json, source_schema
from tabletopic.kafka.registry import RegisteredSchemas

# What audit --values calls a `format: json` table with `json_schema: true`.
JSON_SCHEMA = "json-schema"


@dataclass
class ReferenceRows:
    rows: pa.Table  # the table's columns, one row per good record, in the chunk's order
    good: list[int]  # the good records' indices in the chunk
    bad: dict[int, str] = field(default_factory=dict)  # index -> why the reference path refuses it


class ValueReference(Protocol):
    def decode_values(self, chunk: RecordChunk) -> tuple[pa.Table, list[int], dict[int, str]]:
        """Value columns for the chunk's good records, their indices, and the reasons of the bad ones."""
        ...


class JsonReference:
    def __init__(self, value_schema: pa.Schema, lowercase: bool = False, renames: Renames | None = None) -> None:
        self.schema = value_schema
        self._lowercase = lowercase
        self._renames = dict(renames or {})
        self._check = json_checker(pa.struct(list(value_schema)), "(value)")
        self._parser_schema = pa.schema([pa.field(f.name, parser_type(f.type)) for f in value_schema])

    def decode_values(self, chunk: RecordChunk) -> tuple[pa.Table, list[int], dict[int, str]]:
        records: list[dict[str, Any]] = []
        good: list[int] = []
        bad: dict[int, str] = {}
        for index, value in enumerate(chunk.values):
            try:
                records.append(self._record(value))
                good.append(index)
            except (Misfit, NameCollision, ValueError, UnicodeDecodeError, pa.ArrowException) as exc:
                bad[index] = f"{type(exc).__name__}: {exc}"[:300]
        try:
            return pa.Table.from_pylist(records, schema=self.schema), good, bad
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            return self._one_by_one(records, good, bad)

    def _record(self, value: bytes | None) -> dict[str, Any]:
        if value is None:
            return {}  # a tombstone: a row of nulls
        if is_too_deep(value):  # the writer dead-letters it too; json.loads would recurse out of the stack
            raise Misfit(too_deep_message(value))
        if self._lowercase:
            value = lowercase_json(value, source_schema(self.schema, self._renames))
        value = rename_json(value, self._renames)  # RenameCollision (a ValueError): the writer dead-letters it too
        parsed = json.loads(value)
        if not isinstance(parsed, dict):
            raise Misfit(f"a JSON {type(parsed).__name__}, not an object")
        try:
            self._check(parsed)
        except NeedsParser:
            return self._parsed_by_arrow(value)
        return parsed

    def _parsed_by_arrow(self, value: bytes) -> dict[str, Any]:
        one_line = value.replace(b"\r", b" ").replace(b"\n", b" ")
        options = pa_json.ParseOptions(explicit_schema=self._parser_schema, unexpected_field_behavior="ignore")
        table = pa_json.read_json(io.BytesIO(one_line), parse_options=options)
        if table.num_rows != 1:
            raise Misfit(f"{table.num_rows} JSON rows in one value")
        row: dict[str, Any] = table.to_pylist()[0]
        return row

    def _one_by_one(
        self, records: list[dict[str, Any]], good: list[int], bad: dict[int, str]
    ) -> tuple[pa.Table, list[int], dict[int, str]]:
        kept, kept_good = [], []
        for record, index in zip(records, good, strict=True):
            try:
                pa.Table.from_pylist([record], schema=self.schema)
            except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
                bad[index] = f"{type(exc).__name__}: {exc}"[:300]
                continue
            kept.append(record)
            kept_good.append(index)
        return pa.Table.from_pylist(kept, schema=self.schema), kept_good, bad


class AvroReference:
    """The writer's per-record Avro path (fastavro, one value at a time), never the native batch reader."""

    def __init__(self, schemas: WriterSchemas, value_schema: pa.Schema, lowercase: bool = False,
                 renames: Renames | None = None) -> None:
        self._decoder = AvroDecoder(schemas, value_schema, lowercase=lowercase, renames=renames)

    def decode_values(self, chunk: RecordChunk) -> tuple[pa.Table, list[int], dict[int, str]]:
        decoded = self._decoder._decode_each(chunk.values)
        good = list(range(len(chunk))) if decoded.good is None else decoded.good
        return decoded.rows, good, {b.index: f"{b.code}: {b.reason}"[:300] for b in decoded.bad}


class ProtobufReference:
    """The writer's per-record Protobuf path (python protobuf, one value at a time), never ptars."""

    def __init__(self, registry: RegisteredSchemas, value_schema: pa.Schema, lowercase: bool = False,
                 renames: Renames | None = None) -> None:
        self._decoder = ProtobufDecoder(ProtobufSchemas(registry), value_schema, lowercase=lowercase, renames=renames)

    def decode_values(self, chunk: RecordChunk) -> tuple[pa.Table, list[int], dict[int, str]]:
        decoded = self._decoder._decode_each(chunk.values)
        good = list(range(len(chunk))) if decoded.good is None else decoded.good
        return decoded.rows, good, {b.index: f"{b.code}: {b.reason}"[:300] for b in decoded.bad}


class JsonSchemaReference:
    """JSON under a registered JSON Schema: validated, then converted one value at a time (never the batch read)."""

    def __init__(self, writer_schemas: WriterSchemas, value_schema: pa.Schema) -> None:
        self._decoder = JsonSchemaDecoder(JsonSchemas(writer_schemas.registry), value_schema, reference_only=True)

    def decode_values(self, chunk: RecordChunk) -> tuple[pa.Table, list[int], dict[int, str]]:
        decoded = self._decoder.decode(chunk, allow_drift=False)
        good = list(range(len(chunk))) if decoded.good is None else decoded.good
        return decoded.rows, good, {b.index: f"{b.code}: {b.reason}"[:300] for b in decoded.bad}


class RawReference:
    def decode_values(self, chunk: RecordChunk) -> tuple[pa.Table, list[int], dict[int, str]]:
        rows = pa.table({"key": pa.array(chunk.keys, pa.binary()), "value": pa.array(chunk.values, pa.binary())})
        return rows, list(range(len(chunk))), {}


def reference_for(
    fmt: str, value_schema: pa.Schema, lowercase: bool = False, writer_schemas: WriterSchemas | None = None,
    renames: Renames | None = None,
) -> ValueReference:
    """The reference decode for a table of format `fmt` whose value columns are `value_schema`; `renames`: its
    `rename_columns` as the decoders apply them (decode/renames.py column_renames)."""
    if fmt == "json":
        return JsonReference(value_schema, lowercase, renames)
    if fmt == "avro":
        if writer_schemas is None:
            raise ValueError("an Avro table needs the schema registry")
        return AvroReference(writer_schemas, value_schema, lowercase, renames)
    if fmt == JSON_SCHEMA:
        if writer_schemas is None:
            raise ValueError("a JSON Schema table needs the schema registry")
        return JsonSchemaReference(writer_schemas, value_schema)
    if fmt == "protobuf":
        registry = writer_schemas.registry if writer_schemas is not None else None
        if not isinstance(registry, RegisteredSchemas):
            raise ValueError("a Protobuf table needs the schema registry")
        return ProtobufReference(registry, value_schema, lowercase, renames)
    return RawReference()


def metadata_columns(chunk: RecordChunk) -> dict[str, pa.Array]:
    """The `_kafka_*` columns of the chunk's records, built one value at a time."""
    return {
        metadata.TOPIC: pa.array([chunk.topic] * len(chunk), pa.string()),
        metadata.PARTITION: pa.array([chunk.partition] * len(chunk), pa.int32()),
        metadata.OFFSET: pa.array(chunk.offsets, pa.int64()),
        metadata.TIMESTAMP: pa.array([None if t is None else t * 1000 for t in chunk.timestamps_ms],
                                     pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        metadata.KEY: pa.array(chunk.keys, pa.binary()),
        metadata.HEADERS: pa.array([None if h is None else list(h) for h in chunk.headers], metadata.HEADERS_TYPE),
    }


def reference_rows(chunk: RecordChunk, reference: ValueReference, schema: pa.Schema) -> ReferenceRows:
    """The rows the table should hold for `chunk`, with exactly `schema`'s columns."""
    values, good, bad = reference.decode_values(chunk)
    picked = chunk.select(good) if len(good) != len(chunk) else chunk
    meta = metadata_columns(picked)
    arrays = []
    for column in schema:
        if column.name in meta:
            array: pa.Array | pa.ChunkedArray = meta[column.name]
        elif column.name in values.column_names:
            array = values[column.name]
        else:
            array = pa.nulls(len(good), column.type)
        arrays.append(array)
    names = [column.name for column in schema]
    return ReferenceRows(pa.Table.from_arrays(arrays, names=names), good, bad)
