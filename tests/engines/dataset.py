"""The records the engine suite writes through tabletopic, and their expected values in canonical form.

Canonical form (what every engine's answer is normalised to before comparing): timestamps as
microseconds since the epoch (UTC), dates as ISO strings, decimals as Decimal, binaries as
bytes, structs as dicts, maps as dicts, lists as lists.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

JSON_TABLE = "engines.json_events"
AVRO_TABLE = "engines.avro_payments"
JSON_PARTITION_BY = ["region", "hour(_kafka_timestamp)"]
AVRO_PARTITION_BY = ["day(at)", "bucket(8, id)"]
REGIONS = ["eu", "us", "apac"]
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
START = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def json_event(i: int) -> dict[str, Any]:
    return {
        "id": i,
        "region": REGIONS[i % 3],
        "name": f"name-{i}" if i % 5 else None,
        "score": i / 4,
        "active": i % 2 == 0,
        "uid": str(uuid.UUID(int=i)),
        "address": {"city": f"city-{i % 7}", "zip": 1000 + i % 13},
        "tags": [f"t{i % 3}", f"t{i % 4}"] if i % 3 else [],
        "items": [{"sku": f"s{i}", "qty": i % 9}],
    }


def json_value(i: int) -> bytes:
    return json.dumps(json_event(i)).encode()


AVRO_SCHEMA: dict[str, Any] = {
    "type": "record", "name": "Payment", "namespace": "engines", "fields": [
        {"name": "id", "type": "long"},
        {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}},
        {"name": "rate", "type": "double"},
        {"name": "ratio", "type": "float"},
        {"name": "count", "type": "int"},
        {"name": "flag", "type": "boolean"},
        {"name": "blob", "type": "bytes"},
        {"name": "code", "type": {"type": "fixed", "name": "Code", "size": 4}},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "at_ms", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "local_at", "type": {"type": "long", "logicalType": "local-timestamp-micros"}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "t", "type": {"type": "long", "logicalType": "time-micros"}},
        {"name": "uid", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID", "VOID"]}},
        {"name": "payer", "type": {"type": "record", "name": "Payer", "fields": [
            {"name": "name", "type": "string"}, {"name": "country", "type": "string"}]}},
        {"name": "labels", "type": {"type": "array", "items": "string"}},
        {"name": "attrs", "type": {"type": "map", "values": "long"}},
        {"name": "lines", "type": {"type": "array", "items": {"type": "record", "name": "Line", "fields": [
            {"name": "sku", "type": "string"}, {"name": "qty", "type": "int"}]}}},
        {"name": "memo", "type": ["null", "string"], "default": None},
    ],
}


def avro_record(i: int) -> dict[str, Any]:
    at = START + dt.timedelta(hours=i % 72, microseconds=i)
    return {
        "id": i,
        "amount": (Decimal(i * 7 % 100000) / 100).quantize(Decimal("0.01")),
        "rate": i / 7,
        "ratio": (i % 64) / 8,  # exact in float32
        "count": i % 1000,
        "flag": i % 3 == 0,
        "blob": i.to_bytes(4, "big"),
        "code": (i % 65536).to_bytes(4, "big"),
        "at": at,
        "at_ms": START + dt.timedelta(milliseconds=i),
        "local_at": dt.datetime(2026, 1, 1) + dt.timedelta(seconds=i),
        "day": dt.date(2026, 1, 1) + dt.timedelta(days=i % 30),
        "t": dt.time(i % 24, i % 60, i % 60, i % 1000),
        "uid": str(uuid.UUID(int=i + 1)),
        "status": ["NEW", "PAID", "VOID"][i % 3],
        "payer": {"name": f"p{i % 31}", "country": ["NL", "DE", "FR"][i % 3]},
        "labels": [f"l{i % 5}"] * (i % 3),
        "attrs": {"a": i, "b": -i} if i % 2 else {},
        "lines": [{"sku": f"s{j}", "qty": j} for j in range(i % 3)],
        "memo": None if i % 4 else f"m{i}",
    }


def micros(value: dt.datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return (value - EPOCH) // dt.timedelta(microseconds=1)


def expected_json_row(i: int) -> dict[str, Any]:
    return json_event(i)


def expected_avro_row(i: int) -> dict[str, Any]:
    record = avro_record(i)
    t: dt.time = record["t"]
    return {
        **record,
        "at": micros(record["at"]),
        "at_ms": micros(record["at_ms"]),
        "local_at": micros(record["local_at"]),
        "day": record["day"].isoformat(),
        "t": ((t.hour * 60 + t.minute) * 60 + t.second) * 1_000_000 + t.microsecond,
    }


def canonical(value: Any) -> Any:
    """An engine's value in canonical form (see the module docstring)."""
    if isinstance(value, dt.datetime):
        return micros(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, tuple) and type(value).__name__ == "NamedRowTuple":  # a Trino row
        return {k: canonical(v) for k, v in zip(value._names, value, strict=True)}
    if isinstance(value, tuple) and type(value).__name__ == "Row":  # a Spark row
        return {k: canonical(v) for k, v in value.asDict(recursive=False).items()}
    if isinstance(value, dict):
        return {canonical(k): canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        if value and all(type(v) is tuple and len(v) == 2 for v in value):
            return {canonical(k): canonical(v) for k, v in value}  # a map as a list of pairs (pyarrow)
        return [canonical(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return value  # keep floats as floats; ints stay ints
    return value
