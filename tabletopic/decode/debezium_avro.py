"""Debezium's Avro envelopes: the schema of the row they carry (`after`), as a writer schema of its own.

A Debezium Avro value is an `Envelope` record (`before`, `after`, `source`, `op`, ...) whose `after` is the
source table's `Value` record. The table holds `after` rows, so its writer schema is that `Value` record
(plus the optional CDC columns), served under a derived id: the envelope's id + `AFTER_ROW_ID_OFFSET`. The
envelope step (sink/envelope.py) re-frames each `after` under the derived id, and from then on the Avro
decoder, its schema evolution and its dead letters treat the rows like any Avro record."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from tabletopic.kafka.registry import SchemaTexts

AFTER_ROW_ID_OFFSET = 1 << 31  # above any registry's ids; the wire format's id is an unsigned 32-bit int
EXTRA_TYPES = {"op": "string", "source_ts_ms": "long", "lsn": "long"}


class NotAnEnvelope(ValueError):
    """The writer schema is not a Debezium envelope: no nullable `after` record."""


def after_row_schema(envelope: Mapping[str, Any], extra: Mapping[str, str]) -> dict[str, Any]:
    """The `Value` record of `envelope` as a standalone schema, with a nullable field per CDC column of
    `extra` (kind → column name: `op`, `source_ts_ms`, `lsn`)."""
    fields = envelope.get("fields") if envelope.get("type") == "record" else None
    after = next((f for f in fields or [] if isinstance(f, Mapping) and f.get("name") == "after"), None)
    if after is None:
        raise NotAnEnvelope("the writer schema has no `after` field: not a Debezium envelope")
    branches = after["type"] if isinstance(after.get("type"), list) else [after.get("type")]
    record = next((b for b in branches if b != "null"), None)
    namespace = envelope.get("namespace", "")
    if isinstance(record, str):  # defined once, in `before`, and named here
        record = _named(envelope, record, namespace)
    if not isinstance(record, Mapping) or record.get("type") != "record":
        raise NotAnEnvelope("`after` is not a record")
    row = copy.deepcopy(dict(record))
    if "namespace" not in row and "." not in row["name"]:
        row["namespace"] = namespace
    names = {f["name"] for f in row.get("fields", [])}
    for kind, column in extra.items():
        if column in names:
            raise NotAnEnvelope(f"`after` already has a field {column!r}, named for the CDC column {kind}")
        row["fields"] = [*row.get("fields", []), {"name": column, "type": ["null", EXTRA_TYPES[kind]],
                                                  "default": None}]
    return row


def _named(schema: Any, name: str, namespace: str) -> Mapping[str, Any] | None:
    """The record named `name` (short or full) defined somewhere inside `schema`."""
    if isinstance(schema, list):
        for item in schema:
            if (found := _named(item, name, namespace)) is not None:
                return found
        return None
    if not isinstance(schema, Mapping):
        return None
    own = schema.get("namespace", namespace)
    if schema.get("type") == "record":
        full = schema["name"] if "." in schema["name"] else f"{own}.{schema['name']}" if own else schema["name"]
        if name in (schema["name"], full):
            return schema
        for field in schema.get("fields", []):
            if (found := _named(field.get("type"), name, own)) is not None:
                return found
    return None


class AfterRowSchemas:
    """The registry, plus each envelope's `after` row schema under its derived id."""

    def __init__(self, registry: SchemaTexts, extra: Mapping[str, str]) -> None:
        self._registry = registry
        self._extra = dict(extra)
        self._derived: dict[int, str] = {}

    def schema_text(self, schema_id: int) -> str:
        if schema_id < AFTER_ROW_ID_OFFSET:
            return self._registry.schema_text(schema_id)
        text = self._derived.get(schema_id)
        if text is None:
            envelope = json.loads(self._registry.schema_text(schema_id - AFTER_ROW_ID_OFFSET))
            text = self._derived[schema_id] = json.dumps(after_row_schema(envelope, self._extra))
        return text
