"""The per-record path: a parsed Protobuf message (python protobuf, upb) → a dict of column values, along
its MessageShape. The reference the batch path (protobuf_batch.py) is checked against. Pure.
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from tabletopic.decode.protobuf_types import Field, Value

# Timestamps Iceberg and Python both take: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999Z (µs).
MIN_TIMESTAMP_US, MAX_TIMESTAMP_US = -62_135_596_800_000_000, 253_402_300_799_999_999
# google.protobuf.Duration's own range: ±10,000 years.
MAX_DURATION_US = 315_576_000_000_999_999


class TooManyItems(ValueError):
    """A repeated field or map with more items than the table's `max_items`."""


class OutOfRange(ValueError):
    """A Timestamp or Duration outside the range its column holds."""


def message_row(message: Message, fields: tuple[Field, ...], max_items: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields:
        raw = getattr(message, f.name)
        if f.shape == "list":
            _check_items(f, len(raw), max_items)
            out[f.column] = [_convert(item, f.value, max_items) for item in raw]
        elif f.shape == "map":
            _check_items(f, len(raw), max_items)
            assert f.key is not None
            # In key order: protobuf maps have no order (and upb's is its hash table's).
            out[f.column] = [(_convert(k, f.key, max_items), _convert(v, f.value, max_items))
                             for k, v in sorted(raw.items(), key=_by_key)]
        elif f.presence and not message.HasField(f.name):
            out[f.column] = None
        else:
            out[f.column] = _convert(raw, f.value, max_items)
    return out


def _by_key(entry: tuple[Any, Any]) -> Any:
    return entry[0]


def _check_items(f: Field, count: int, max_items: int) -> None:
    if count > max_items:
        raise TooManyItems(f"field {f.name!r} has {count} items, more than max_items ({max_items})")


def _convert(raw: Any, value: Value, max_items: int) -> Any:
    kind = value.kind
    if kind == "scalar":
        return raw
    if kind == "enum":
        return value.enum_names.get(raw, str(raw))
    if kind == "message":
        return message_row(raw, value.fields, max_items)
    if kind == "timestamp":
        micros = raw.seconds * 1_000_000 + _truncated_micros(raw.nanos)
        if not MIN_TIMESTAMP_US <= micros <= MAX_TIMESTAMP_US:
            raise OutOfRange(f"Timestamp {raw.seconds}s {raw.nanos}ns is outside years 1-9999")
        return micros
    if kind == "duration":
        micros = raw.seconds * 1_000_000 + _truncated_micros(raw.nanos)
        if abs(micros) > MAX_DURATION_US:
            raise OutOfRange(f"Duration {raw.seconds}s {raw.nanos}ns is outside ±10,000 years")
        return micros
    if kind == "wrapper":
        return _convert(raw.value, value.fields[0].value, max_items)
    if kind == "any":
        return {"type_url": raw.type_url, "value": raw.value}
    if kind == "json":
        return json.dumps(json_format.MessageToDict(raw), ensure_ascii=False, separators=(",", ":"))
    raise AssertionError(f"unknown value kind {kind}")


def _truncated_micros(nanos: int) -> int:
    """Nanoseconds to microseconds towards zero, as the batch reader does."""
    return -(-nanos // 1000) if nanos < 0 else nanos // 1000
