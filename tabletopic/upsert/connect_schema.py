"""Kafka Connect's embedded schema (JsonConverter with `schemas.enable`) of a Debezium row → the columns it
declares, and the row's values in the JSON form the JSON decoder parses into those columns. Pure.

Without it a Debezium timestamp is a bare number and the table would get a `long` column. Mapped:
int8/16/32 → int, int64 → long, float32 → float, float64 → double, boolean, string, structs and arrays
of those; Debezium's and Connect's logical types `Date` → date, `Timestamp`/`MicroTimestamp` →
timestamp, `ZonedTimestamp` → timestamptz, Connect's `Decimal` → its exact decimal text (a string column,
as `decimal.handling.mode=string` gives). Nanosecond timestamps and times of day stay the numbers they
are (long: Iceberg v2's microsecond types would alter them); bytes (base64 text) and maps are left to
the JSON decoder's inference."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from decimal import Decimal
from typing import Any

import pyarrow as pa

_PRIMITIVES = {
    "int8": pa.int32(), "int16": pa.int32(), "int32": pa.int32(), "int64": pa.int64(),
    "float32": pa.float32(), "float64": pa.float64(), "boolean": pa.bool_(), "string": pa.string(),
}
_DATES = {"io.debezium.time.Date", "org.apache.kafka.connect.data.Date"}
_MILLIS = {"io.debezium.time.Timestamp", "org.apache.kafka.connect.data.Timestamp"}
_MICROS = {"io.debezium.time.MicroTimestamp"}
_ZONED = {"io.debezium.time.ZonedTimestamp"}
_DECIMAL = "org.apache.kafka.connect.data.Decimal"
_EPOCH = dt.datetime(1970, 1, 1)


def row_fields(envelope_schema: Any, field: str = "after") -> list[Mapping[str, Any]] | None:
    """The fields of the envelope's `after` (or `before`) struct, if the schema declares them."""
    if not isinstance(envelope_schema, Mapping):
        return None
    for part in envelope_schema.get("fields") or []:
        if isinstance(part, Mapping) and part.get("field") == field and part.get("type") == "struct":
            fields = part.get("fields")
            return [f for f in fields if isinstance(f, Mapping)] if isinstance(fields, list) else None
    return None


def arrow_type(schema: Mapping[str, Any]) -> pa.DataType | None:
    """The column type a Connect schema declares; None where the JSON decoder's inference should decide
    (and for anything this does not understand: a schema is input too)."""
    name = schema.get("name")
    kind = schema.get("type")
    name = name if isinstance(name, str) else None
    kind = kind if isinstance(kind, str) else None
    if name in _DATES:
        return pa.date32()
    if name in _MILLIS or name in _MICROS:
        return pa.timestamp("us")
    if name in _ZONED:
        return pa.timestamp("us", tz="UTC")
    if name == _DECIMAL:
        return pa.string()
    if kind in _PRIMITIVES:
        return _PRIMITIVES[kind]
    if kind == "struct" and isinstance(schema.get("fields"), list):
        children = [(f.get("field"), arrow_type(f)) for f in schema["fields"] if isinstance(f, Mapping)]
        if not children or any(not isinstance(n, str) or t is None for n, t in children):
            return None
        return pa.struct([pa.field(n, t, nullable=True) for n, t in children])
    if kind == "array" and isinstance(schema.get("items"), Mapping):
        item = arrow_type(schema["items"])
        return None if item is None else pa.list_(item)
    return None


def arrow_schema(fields: Sequence[Mapping[str, Any]]) -> pa.Schema:
    """The columns the fields declare a type for (the others are left to inference)."""
    declared = []
    for field in fields:
        name, data_type = field.get("field"), arrow_type(field)
        if isinstance(name, str) and data_type is not None:
            declared.append(pa.field(name, data_type, nullable=True))
    return pa.schema(declared)


class BadLogicalValue(ValueError):
    """A value its Connect schema's logical type cannot read: the record is a dead letter, never stored raw."""


def json_ready(row: Mapping[str, Any], fields: Sequence[Mapping[str, Any]],
               columns: Mapping[str, pa.DataType], keep: Collection[str] = ()) -> dict[str, Any]:
    """`row` with its logical-typed values in the JSON form their column parses: ISO timestamps, decimals as
    their exact text; dates stay days since the epoch (what a date column parses). Converted only where the
    table has no such column yet or has it with the declared type (`columns`: the table's): a column made
    from the bare numbers (schemas off, at first) keeps getting them. `keep`: fields never converted (the
    key's: the Kafka key carries them in their bare form). Raises BadLogicalValue."""
    converted = dict(row)
    for field in fields:
        name = field.get("field")
        if not isinstance(name, str) or name in keep or converted.get(name) is None:
            continue
        existing = columns.get(name)
        if existing is not None and not _same_kind(existing, arrow_type(field)):
            continue
        converted[name] = _converted(name, converted[name], field)
    return converted


def _same_kind(existing: pa.DataType, declared: pa.DataType | None) -> bool:
    if declared is None:
        return False
    if pa.types.is_string(declared):
        return pa.types.is_string(existing) or pa.types.is_large_string(existing)
    return bool(existing.equals(declared))


MAX_DECIMAL_SCALE = 1000


def _converted(column: str, value: Any, schema: Mapping[str, Any]) -> Any:
    name = schema.get("name")
    try:
        if name in _MILLIS and isinstance(value, int):
            return (_EPOCH + dt.timedelta(milliseconds=value)).isoformat(timespec="microseconds")
        if name in _MICROS and isinstance(value, int):
            return (_EPOCH + dt.timedelta(microseconds=value)).isoformat(timespec="microseconds")
        if name == _DECIMAL:
            parameters = schema.get("parameters")
            scale = int(parameters.get("scale", 0)) if isinstance(parameters, Mapping) else 0
            if not isinstance(value, str) or abs(scale) > MAX_DECIMAL_SCALE:
                raise ValueError(f"a decimal of scale {scale} as {type(value).__name__}")
            unscaled = int.from_bytes(base64.b64decode(value, validate=True), "big", signed=True)
            return format(Decimal(unscaled).scaleb(-scale), "f")
    except (ValueError, TypeError, OverflowError, ArithmeticError) as exc:
        raise BadLogicalValue(f"{column}: {value!r:.40} is no {name} ({exc})") from None
    return value
