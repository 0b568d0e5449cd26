"""Kafka record keys → the key columns of an upsert table, one row per key, a BadValue for each bad one.

A JSON object's or an Avro record's top-level fields become columns; a JSON scalar, an Avro primitive, a
string or bytes key becomes the one column `_key`. Kafka Connect's {"schema": ..., "payload": ...} wrapper
is taken off first. Each key column must be a primitive that is not a float: a key that would need
anything else, or has a null or absent field, is bad, never changed into another key.

Types: with the table's key columns (`schema`), every key is checked against them: a value that does
not fit its column is `type_mismatch`, a field the table's key lacks `incompatible_schema`, an absent or
null one `missing_key`. Without them, the first key that is a valid key decides the columns (integers
as int64, whatever their width, so the type does not depend on the first key's writer schema), and
every key is then checked against those.

`KeyDecoder.decode_each` is the reference: one key at a time in Python. `decode` takes a batch path
for string and bytes keys and for JSON objects whose columns are strings, integers or booleans, and
falls back to the reference whenever the batch path would need to judge a key.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import fastavro
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from tabletopic.core.limits import DEFAULT_MAX_ITEMS
from tabletopic.core.reasons import Reason
from tabletopic.core.upsert_mode import KEY_COLUMN, KeyFormat
from tabletopic.decode import avro_limits
from tabletopic.decode.avro import UnreadableSchema, WriterSchemas, _as_column_values, avro_to_arrow
from tabletopic.decode.base import BadValue
from tabletopic.decode.wire import HEADER, schema_id_of
from tabletopic.exceptions import SchemaError
from tabletopic.kafka.registry import SchemaTexts, UnknownSchemaId

_MIN_BLOCK_BYTES = 1 << 20
_CONNECT_WRAPPER = frozenset({"schema", "payload"})
_JSON = json.JSONDecoder(strict=False)  # control characters in strings, as pyarrow.json takes them
_FIXED_TYPES = {"string": pa.string(), "bytes": pa.binary()}


@dataclass
class DecodedKeys:
    table: pa.Table  # one row per input key, in order; the key columns; nulls in the rows listed in `bad`
    bad: list[BadValue]  # in index order


@dataclass(slots=True)
class ParsedKey:
    """A key taken apart: its fields, and their column types when the key's own schema says (Avro)."""

    fields: dict[str, Any]
    types: Mapping[str, pa.DataType] | None = None


class KeyDecoder:
    """`schema`: the table's key columns once the table exists (their nullability is ignored: bad rows are
    null in the output). `registry` is needed for Avro keys."""

    def __init__(self, key_format: KeyFormat, registry: SchemaTexts | None = None,
                 schema: pa.Schema | None = None) -> None:
        if key_format == "avro" and registry is None:
            raise ValueError("Avro keys need the schema registry")
        if key_format in ("string", "bytes") and schema is not None and schema.names != [KEY_COLUMN]:
            raise ValueError(f"a {key_format} key is the one column {KEY_COLUMN!r}, not {schema.names}")
        self.key_format = key_format
        if schema is None and key_format in _FIXED_TYPES:
            schema = pa.schema([(KEY_COLUMN, _FIXED_TYPES[key_format])])
        self.schema = None if schema is None else pa.schema([pa.field(f.name, f.type) for f in schema])
        self._writer_schemas = WriterSchemas(registry) if registry is not None else None
        self._avro_types: dict[int, dict[str, pa.DataType] | BadValue] = {}

    def decode(self, keys: Sequence[bytes | None]) -> DecodedKeys:
        if self.key_format == "string":
            decoded = _string_batch(keys, self._single_column_type())
        elif self.key_format == "bytes":
            decoded = _bytes_batch(keys, self._single_column_type())
        elif self.key_format == "json":
            decoded = self._json_batch(keys)
        else:
            decoded = None
        return decoded if decoded is not None else self.decode_each(keys)

    def decode_each(self, keys: Sequence[bytes | None]) -> DecodedKeys:
        """The reference path: each key parsed and checked on its own."""
        parsed = [self.parse(key) for key in keys]
        return rows_from_fields(parsed, self.schema)

    def parse(self, key: bytes | None) -> ParsedKey | BadValue:
        """One key's fields (index 0 in a BadValue: the caller places it)."""
        if key is None:
            return BadValue(0, "the record has no key", Reason.MISSING_KEY)
        if self.key_format == "string":
            try:
                return ParsedKey({KEY_COLUMN: key.decode("utf-8")}, {KEY_COLUMN: pa.string()})
            except UnicodeDecodeError as exc:
                return BadValue(0, f"the key is not UTF-8 text: {exc}", Reason.TYPE_MISMATCH)
        if self.key_format == "bytes":
            return ParsedKey({KEY_COLUMN: bytes(key)}, {KEY_COLUMN: pa.binary()})
        if self.key_format == "json":
            return _json_fields(key)
        return self._avro_fields(key)

    def _single_column_type(self) -> pa.DataType:
        assert self.schema is not None
        return self.schema.field(KEY_COLUMN).type

    def _json_batch(self, keys: Sequence[bytes | None]) -> DecodedKeys | None:
        """JSON objects parsed at once against the key columns (the table's, or the first valid key's);
        None when a key or a column needs the reference path."""
        if not keys or any(k is not None and k[:1] != b"{" for k in keys):
            return None
        schema = self.schema if self.schema is not None else _first_schema(self.parse(k) for k in keys)
        if schema is None or not schema.names or set(schema.names) == _CONNECT_WRAPPER \
                or not all(_batchable(f.type) for f in schema):
            return None
        lines = [b"{}" if k is None else k for k in keys]
        joined = b"\n".join(lines)
        if joined.count(b"\n") != len(lines) - 1 or b"\r" in joined:
            return None
        try:
            table = pa_json.read_json(
                io.BytesIO(joined),
                read_options=pa_json.ReadOptions(block_size=max(_MIN_BLOCK_BYTES, len(joined) + 1)),
                parse_options=pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error"),
            )
            table.validate(full=True)  # the parser takes invalid UTF-8 into string columns
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, ValueError):
            return None
        if table.num_rows != len(keys):
            return None
        table = table.select(schema.names).cast(schema)
        bad: dict[int, BadValue] = {i: BadValue(i, "the record has no key", Reason.MISSING_KEY)
                                    for i, k in enumerate(keys) if k is None}
        for name in schema.names:
            column = table[name]
            if column.null_count:
                for i in pc.indices_nonzero(column.is_null()).to_pylist():
                    bad.setdefault(i, BadValue(i, _null_reason(name), Reason.MISSING_KEY))
        return _with_bad_rows(table, sorted(bad.values(), key=lambda b: b.index))

    def record(self, value: bytes) -> dict[str, Any] | BadValue:
        """A whole JSON or Avro value as a record (its top-level fields; a scalar as `_key`), e.g. a value
        that holds the key columns, or a Debezium envelope: its fields are not checked as key columns."""
        if self.key_format == "json":
            parsed = _json_fields(value)
        elif self.key_format == "avro":
            parsed = self._avro_fields(value, as_key=False)
        else:
            raise ValueError(f"a {self.key_format} value is no record")
        return parsed if isinstance(parsed, BadValue) else parsed.fields

    def _avro_fields(self, key: bytes, as_key: bool = True) -> ParsedKey | BadValue:
        assert self._writer_schemas is not None
        what = "key" if as_key else "value"
        try:
            schema_id = schema_id_of(key)
        except ValueError as exc:
            return BadValue(0, f"the {what}: {exc}", Reason.NOT_WIRE_FORMAT)
        try:
            writer = self._writer_schemas.parsed(schema_id)
        except UnknownSchemaId:
            return BadValue(0, f"the {what}'s schema id {schema_id} is unknown", Reason.UNKNOWN_SCHEMA_ID, schema_id)
        except UnreadableSchema as exc:
            return BadValue(0, f"the {what}'s schema id {schema_id}: {exc}", Reason.INCOMPATIBLE_SCHEMA, schema_id)
        types: dict[str, pa.DataType] | None = None
        if as_key:
            known = self._avro_types.get(schema_id)
            if known is None:
                known = self._avro_types[schema_id] = _key_types(writer, schema_id)
            if isinstance(known, BadValue):
                return known  # refused before reading the body: a key schema with arrays could claim any size
            types = known
        else:
            refusal = avro_limits.items_refusal(self._writer_schemas.item_walker(schema_id), key, HEADER.size,
                                                DEFAULT_MAX_ITEMS)
            if refusal is not None:
                return BadValue(0, f"the value's schema id {schema_id}: {refusal[1]}", refusal[0], schema_id)
        body = io.BytesIO(key)
        body.seek(HEADER.size)
        try:
            record = fastavro.schemaless_reader(body, writer, None)
        except Exception as exc:
            return BadValue(0, f"undecodable Avro {what} (schema id {schema_id}): {exc!r}", Reason.UNDECODABLE_AVRO,
                            schema_id)
        if body.tell() != len(key):
            return BadValue(0, f"undecodable Avro {what} (schema id {schema_id}): {len(key) - body.tell()} bytes "
                            "after the record", Reason.UNDECODABLE_AVRO, schema_id)
        record = _as_column_values(record)
        fields = dict(record) if isinstance(record, dict) else {KEY_COLUMN: record}
        return ParsedKey(fields, types)


def rows_from_fields(parsed: Sequence[ParsedKey | BadValue], schema: pa.Schema | None) -> DecodedKeys:
    """The key rows of parsed keys, checked against `schema` (or the first valid key's columns)."""
    if schema is None:
        schema = _first_schema(parsed) or pa.schema([])
    schema = pa.schema([pa.field(f.name, f.type) for f in schema])  # bad rows are null
    if not len(schema):
        bad = [item.at(i) if isinstance(item, BadValue) else BadValue(i, "the key has no fields", Reason.MISSING_KEY)
               for i, item in enumerate(parsed)]
        return DecodedKeys(pa.Table.from_struct_array(pa.array([{}] * len(parsed), pa.struct([]))), bad)
    row_of = _RowChecker(schema)
    columns: list[list[Any]] = [[] for _ in schema]
    bad = []
    for index, item in enumerate(parsed):
        row = item if isinstance(item, BadValue) else row_of(item)
        if isinstance(row, BadValue):
            bad.append(row.at(index))
            row = [None] * len(columns)
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    arrays = [pa.array(values, field.type) for values, field in zip(columns, schema, strict=True)]
    return DecodedKeys(pa.Table.from_arrays(arrays, schema=schema), bad)


def _json_fields(key: bytes) -> ParsedKey | BadValue:
    try:
        value = _JSON.decode(key.decode("utf-8"))
    except RecursionError:
        return BadValue(0, "the key's JSON is nested too deep", Reason.TOO_DEEP)
    except (UnicodeDecodeError, ValueError) as exc:
        return BadValue(0, f"the key is not JSON: {exc}", Reason.MALFORMED_JSON)
    value = _unwrap(value)
    if value is None:
        return BadValue(0, "the key is JSON null", Reason.MISSING_KEY)
    if isinstance(value, list):
        return BadValue(0, "the key is a JSON array: a key is an object or a scalar", Reason.TYPE_MISMATCH)
    return ParsedKey(dict(value) if isinstance(value, dict) else {KEY_COLUMN: value})


def _unwrap(value: Any) -> Any:
    """Kafka Connect's JsonConverter with schemas on wraps a key as {"schema": ..., "payload": ...}. (As
    upsert/debezium.py's `unwrap`, which this layer may not import.)"""
    if isinstance(value, dict) and set(value) == _CONNECT_WRAPPER:
        schema = value["schema"]
        if schema is None or isinstance(schema, dict):
            return value["payload"]
    return value


def _key_types(writer: Any, schema_id: int) -> dict[str, pa.DataType] | BadValue:
    """The column types of an Avro key schema (a record's fields, or `_key` for a primitive)."""
    record = writer if isinstance(writer, dict) and writer.get("type") == "record" else {
        "type": "record", "name": "key", "fields": [{"name": KEY_COLUMN, "type": writer}]}
    try:
        arrow = avro_to_arrow(record)
    except SchemaError as exc:
        return BadValue(0, f"the key's schema id {schema_id}: {exc}", Reason.INCOMPATIBLE_SCHEMA, schema_id)
    for field in arrow:
        if not _key_type(field.type):
            return BadValue(0, f"the key's schema id {schema_id}: field {field.name!r} is {field.type}, which cannot "
                            "be a key column", Reason.TYPE_MISMATCH, schema_id)
    return {f.name: _widened(f.type) for f in arrow}


def _first_schema(parsed: Any) -> pa.Schema | None:
    """The columns of the first key that is a valid key on its own."""
    for item in parsed:
        if isinstance(item, BadValue):
            continue
        schema = _inferred(item)
        if not isinstance(schema, BadValue):
            return schema
    return None


def _inferred(parsed: ParsedKey) -> pa.Schema | BadValue:
    if not parsed.fields:
        return BadValue(0, "the key has no fields", Reason.MISSING_KEY)
    fields = []
    for name, value in parsed.fields.items():
        if value is None:
            return BadValue(0, _null_reason(name), Reason.MISSING_KEY)
        data_type = parsed.types[name] if parsed.types is not None else _value_type(value)
        if data_type is None or not _fits(value, data_type):
            return BadValue(0, _mismatch_reason(name, value, data_type), Reason.TYPE_MISMATCH)
        fields.append(pa.field(name, data_type))
    return pa.schema(fields)


class _RowChecker:
    """A parsed key's row of `schema`'s columns, or why it has none."""

    def __init__(self, schema: pa.Schema) -> None:
        self.names = schema.names
        self.known = frozenset(self.names)
        self.columns = [(f.name, f.type, _checker(f.type)) for f in schema]

    def __call__(self, parsed: ParsedKey) -> list[Any] | BadValue:
        fields = parsed.fields
        if not self.known.issuperset(fields):
            extra = [name for name in fields if name not in self.known]
            return BadValue(0, f"the key has fields {extra} that the table's key ({', '.join(self.names)}) does not",
                            Reason.INCOMPATIBLE_SCHEMA)
        row = []
        for name, data_type, fits in self.columns:
            value = fields.get(name)
            if value is None:
                return BadValue(0, _null_reason(name), Reason.MISSING_KEY)
            if not fits(value):
                return BadValue(0, _mismatch_reason(name, value, data_type), Reason.TYPE_MISMATCH)
            row.append(value)
        return row


def _value_type(value: Any) -> pa.DataType | None:
    """The column type a JSON value infers; None if it cannot be a key column."""
    if isinstance(value, bool):
        return pa.bool_()
    if isinstance(value, int):
        return pa.int64()
    if isinstance(value, str):
        return pa.string()
    return None


def _fits(value: Any, data_type: pa.DataType) -> bool:
    return _checker(data_type)(value)


def _checker(data_type: pa.DataType) -> Callable[[Any], bool]:
    """Whether a value is a value of the key column type `data_type`, as it is (no conversion)."""
    if pa.types.is_boolean(data_type):
        return lambda value: isinstance(value, bool)
    if pa.types.is_integer(data_type):
        bits = data_type.bit_width
        low, high = (0, 2**bits - 1) if pa.types.is_unsigned_integer(data_type) else (-(2**(bits - 1)),
                                                                                       2**(bits - 1) - 1)
        return lambda value: type(value) is int and low <= value <= high
    if pa.types.is_string(data_type) or pa.types.is_large_string(data_type):
        return _is_text
    if pa.types.is_binary(data_type) or pa.types.is_large_binary(data_type):
        return lambda value: isinstance(value, bytes)
    if not _key_type(data_type):
        return lambda value: False

    def fits(value: Any) -> bool:
        if isinstance(value, bool | int | str | bytes | float):
            return False
        try:
            pa.scalar(value, data_type)  # dates, timestamps and decimals of Avro keys
            return True
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            return False

    return fits


def _is_text(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")  # a lone surrogate (JSON "\ud800") has no UTF-8
        return True
    except UnicodeEncodeError:
        return False


def _key_type(data_type: pa.DataType) -> bool:
    """Iceberg's identifier fields: primitives, not floating point."""
    return not (pa.types.is_nested(data_type) or pa.types.is_floating(data_type) or pa.types.is_null(data_type))


def _widened(data_type: pa.DataType) -> pa.DataType:
    return pa.int64() if pa.types.is_signed_integer(data_type) else data_type


def _batchable(data_type: pa.DataType) -> bool:
    return data_type in (pa.int64(), pa.int32(), pa.string(), pa.large_string(), pa.bool_())


def _null_reason(name: str) -> str:
    return f"key column {name!r} is null or absent"


def _mismatch_reason(name: str, value: Any, data_type: pa.DataType | None) -> str:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    if data_type is None or not _key_type(data_type):
        return f"key column {name!r}: {shown} cannot be a key (a key column is a string, integer or boolean)"
    return f"key column {name!r}: {shown} is not a value of type {data_type}"


def _string_batch(keys: Sequence[bytes | None], data_type: pa.DataType) -> DecodedKeys | None:
    try:
        column = pa.array(keys, pa.binary()).cast(data_type)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None  # text that is not UTF-8: the reference names the keys
    return _missing_where_null(column)


def _bytes_batch(keys: Sequence[bytes | None], data_type: pa.DataType) -> DecodedKeys:
    return _missing_where_null(pa.array(keys, pa.binary()).cast(data_type))


def _missing_where_null(column: pa.Array) -> DecodedKeys:
    bad = [BadValue(i, "the record has no key", Reason.MISSING_KEY)
           for i in pc.indices_nonzero(column.is_null()).to_pylist()] if column.null_count else []
    return DecodedKeys(pa.table({KEY_COLUMN: column}), bad)


def _with_bad_rows(table: pa.Table, bad: list[BadValue]) -> DecodedKeys:
    """Every column null in the bad rows."""
    if bad:
        mask = np.zeros(table.num_rows, dtype=bool)
        mask[[b.index for b in bad]] = True
        table = table.combine_chunks()
        columns = [pc.if_else(pa.array(mask), pa.nulls(table.num_rows, f.type), table[f.name].chunk(0))
                   for f in table.schema]
        table = pa.Table.from_arrays(columns, schema=table.schema)
    return DecodedKeys(table, bad)
