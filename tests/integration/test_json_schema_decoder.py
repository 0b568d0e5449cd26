"""The JSON Schema decoder against the real registry (Apicurio's Confluent API): two registered versions,
values framed with their ids, one that violates its schema."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from tabletopic.core.reasons import Reason
from tabletopic.core.records import RecordChunk
from tabletopic.decode.base import SchemaDrift
from tabletopic.decode.json_schema import JsonSchemaDecoder, JsonSchemas, first_json_schema, json_schema_arrow_schema
from tabletopic.kafka.registry import SchemaRegistry

V1: dict[str, Any] = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "required": ["id", "at"],
      "properties": {"id": {"type": "integer"}, "at": {"type": "string", "format": "date-time"},
                     "who": {"$ref": "#/definitions/who"}},
      "definitions": {"who": {"type": "object", "properties": {"name": {"type": "string"}}}}}
V2 = {**V1, "properties": {**V1["properties"], "day": {"type": ["string", "null"], "format": "date"},
                           "tags": {"type": "array", "items": {"type": "string"}}}}


def framed(schema_id: int, document: Any) -> bytes:
    return b"\0" + schema_id.to_bytes(4, "big") + json.dumps(document).encode()


@pytest.fixture
def client(registry: Any) -> Iterator[SchemaRegistryClient]:
    registry_client = SchemaRegistryClient({"url": registry.url})
    yield registry_client
    registry_client.close()


@pytest.fixture
def reader(registry: Any) -> Iterator[SchemaRegistry]:
    schema_registry = SchemaRegistry(registry.url)
    yield schema_registry
    schema_registry._client.close()  # the writer keeps its client for its lifetime; a test closes it


def test_values_of_two_registered_versions_decode_and_a_violation_is_a_dead_letter(
    client: SchemaRegistryClient, reader: SchemaRegistry
) -> None:
    subject = f"json-{uuid.uuid4().hex[:8]}-value"
    first = client.register_schema(subject, Schema(json.dumps(V1), schema_type="JSON"))
    second = client.register_schema(subject, Schema(json.dumps(V2), schema_type="JSON"))
    assert first != second
    values: list[bytes | None] = [
        framed(first, {"id": 1, "at": "2026-03-01T12:00:00Z", "who": {"name": "ann"}}),
        framed(second, {"id": 2, "at": "2026-03-01T12:00:00.5+01:00", "day": "2026-03-01", "tags": ["a"]}),
        framed(second, {"id": "three", "at": "2026-03-01T12:00:00Z"}),  # violates v2: id is an integer
        framed(first, {"id": 4, "at": "2026-03-01T12:00:00Z", "extra": True}),
    ]
    n = len(values)
    chunk = RecordChunk("t", 0, list(range(n)), [None] * n, values, [0] * n, [None] * n)
    schemas = JsonSchemas(reader)
    created = first_json_schema(schemas, values)
    assert created is not None and created.schema_id == first
    table = json_schema_arrow_schema(created)
    with pytest.raises(SchemaDrift) as drift:
        JsonSchemaDecoder(schemas, table).decode(chunk)
    assert drift.value.incoming.names == ["id", "at", "who", "day", "tags"]
    decoded = JsonSchemaDecoder(schemas, drift.value.incoming).decode(chunk)
    assert [(b.index, b.code, b.schema_id) for b in decoded.bad] == [(2, Reason.SCHEMA_VIOLATION, second)]
    assert "at /id" in decoded.bad[0].reason
    assert decoded.good == [0, 1, 3]
    assert decoded.dropped_fields == 1
    utc = dt.UTC
    assert decoded.rows.to_pylist() == [
        {"id": 1, "at": dt.datetime(2026, 3, 1, 12, tzinfo=utc), "who": {"name": "ann"}, "day": None, "tags": None},
        {"id": 2, "at": dt.datetime(2026, 3, 1, 11, 0, 0, 500000, tzinfo=utc), "who": None,
         "day": dt.date(2026, 3, 1), "tags": ["a"]},
        {"id": 4, "at": dt.datetime(2026, 3, 1, 12, tzinfo=utc), "who": None, "day": None, "tags": None},
    ]
