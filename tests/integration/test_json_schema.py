"""format: json with json_schema: true (issue 20) through a real Schema Registry (Apicurio's Confluent API): two
registered versions produced interleaved, a record in every 100 violating its schema; the table is typed by the
registered schema (date-time → timestamptz, date, nested objects, arrays), the violations are dead letters
`schema_violation`, every other record a row; `tabletopic audit` and `audit --values` agree."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from tabletopic.deadletter.rows import dlq_identifier
from tests.support import audit_cli, audit_values_cli, catalog_of, log_end, produce, wait_committed, writer_config

RECORDS = 2000
PARTITIONS = 2
V1: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "required": ["id", "at"],
    "properties": {"id": {"type": "integer"}, "at": {"type": "string", "format": "date-time"},
                   "who": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12}}}},
}
V2: dict[str, Any] = {**V1, "properties": {**V1["properties"], "day": {"type": ["string", "null"], "format": "date"},
                                           "tags": {"type": "array", "items": {"type": "string"}}}}
START = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


@pytest.fixture
def client(registry: Any) -> Iterator[SchemaRegistryClient]:
    registry_client = SchemaRegistryClient({"url": registry.url})
    yield registry_client
    registry_client.close()


def framed(schema_id: int, document: Any) -> bytes:
    return b"\0" + schema_id.to_bytes(4, "big") + json.dumps(document).encode()


def document(i: int) -> dict[str, Any]:
    """Record i as produced: version i % 2 + 1; every 100th violates its schema (a name past maxLength)."""
    at = START + dt.timedelta(milliseconds=i * 1001)
    found: dict[str, Any] = {"id": i, "at": at.isoformat().replace("+00:00", "Z"), "who": {"name": f"user{i % 7}"}}
    if i % 100 == 42:
        found["who"] = {"name": "a name far too long for the schema"}
    if i % 2:
        found["day"] = None if i % 3 else (START.date() + dt.timedelta(days=i % 30)).isoformat()
        found["tags"] = [f"t{k}" for k in range(i % 4)]
    return found


def row(i: int) -> dict[str, Any]:
    """Record i as the table holds it."""
    produced = document(i)
    return {"id": i, "at": START + dt.timedelta(milliseconds=i * 1001), "who": produced["who"],
            "day": dt.date.fromisoformat(produced["day"]) if produced.get("day") else None,
            "tags": produced.get("tags")}


def test_registered_json_schemas_type_the_table_and_violations_are_dead_letters(
        kafka, registry, client, new_topic, spawn_writer, tmp_path):
    topic = new_topic(PARTITIONS)
    table = "jsonschema.events"
    ids = [client.register_schema(f"{topic}-value", Schema(json.dumps(version), "JSON")) for version in (V1, V2)]
    produce(kafka.bootstrap, topic, ((i % PARTITIONS, str(i).encode(), framed(ids[i % 2], document(i)), None)
                                     for i in range(RECORDS)))
    ends = log_end(kafka.bootstrap, topic, PARTITIONS)
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "warehouse",
                           schema_registry={"url": registry.url}, table_settings={"json_schema": True})
    writer = spawn_writer(config)
    iceberg = catalog_of(config)
    wait_committed(iceberg, table, "tests", ends, timeout=120, writer=writer)
    assert writer.stop() == 0, writer.log()

    loaded = iceberg.load_table(table)
    schema = loaded.schema().as_arrow()
    assert schema.field("at").type == pa.timestamp("us", tz="UTC")
    assert schema.field("day").type == pa.date32()
    violating = {i for i in range(RECORDS) if i % 100 == 42}
    rows = {r["id"]: r for r in loaded.scan().to_arrow().to_pylist()}
    assert sorted(rows) == [i for i in range(RECORDS) if i not in violating]
    for i, got in rows.items():
        assert {k: got[k] for k in row(i)} == row(i), i

    letters = iceberg.load_table(dlq_identifier(table)).scan().to_arrow()
    assert sorted(int(k) for k in letters["_kafka_key"].to_pylist()) == sorted(violating)
    assert set(letters["reason"].to_pylist()) == {"schema_violation"}

    audit = audit_cli(config, topic, table)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    values = audit_values_cli(config, topic, table)
    assert values.returncode == 0, values.stdout + values.stderr
    assert " 0 differ" in values.stdout, values.stdout
