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
from collections.abc import Mapping, Sequence
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
    """The column type a Connect schema declares; None where the JSON decoder's inference should decide."""
    name = schema.get("name")
    kind = schema.get("type")
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
    if kind == "struct":
        children = [(f.get("field"), arrow_type(f), f.get("optional", True)) for f in schema.get("fields") or []
                    if isinstance(f, Mapping)]
        if not children or any(not isinstance(n, str) or t is None for n, t, _ in children):
            return None
        return pa.struct([pa.field(n, t, nullable=True) for n, t, _ in children])
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


def json_ready(row: Mapping[str, Any], fields: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """`row` with its logical-typed values in the JSON form their column parses: ISO timestamps, decimals as
    their exact text; dates stay days since the epoch (what a date column parses). A value not of the
    declared form is left as it is (the decoder judges)."""
    converted = dict(row)
    for field in fields:
        name = field.get("field")
        if not isinstance(name, str) or converted.get(name) is None:
            continue
        converted[name] = _converted(converted[name], field)
    return converted


def _converted(value: Any, schema: Mapping[str, Any]) -> Any:
    name = schema.get("name")
    try:
        if name in _MILLIS and isinstance(value, int):
            return (_EPOCH + dt.timedelta(milliseconds=value)).isoformat(timespec="microseconds")
        if name in _MICROS and isinstance(value, int):
            return (_EPOCH + dt.timedelta(microseconds=value)).isoformat(timespec="microseconds")
        if name == _DECIMAL and isinstance(value, str):
            scale = int((schema.get("parameters") or {}).get("scale", 0))
            unscaled = int.from_bytes(base64.b64decode(value, validate=True), "big", signed=True)
            return str(Decimal(unscaled).scaleb(-scale))
    except (ValueError, OverflowError):
        return value
    return value
