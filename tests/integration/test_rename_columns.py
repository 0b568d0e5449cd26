"""`rename_columns` against a real broker, registry and catalog: the renamed column holds the values, a
record carrying a renamed field and its target is a dead letter `rename_collision`, and `audit --values`
(which re-decodes the topic under the table's renames) passes — and fails under a config without them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from tests.support import (
    assert_values_equal,
    audit_values_cli,
    catalog_of,
    log_end,
    produce,
    wait_committed,
    writer_config,
)

RECORDS = 300
COLLISION = 57  # the offset of the one record carrying both a renamed field and its target


def _written(kafka: Any, spawn_writer: Any, tmp_path: Path, topic: str, table: str, **settings: Any) -> Path:
    """The topic's records through a writer of `table` until it holds the log end; the writer stopped."""
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "warehouse", **settings)
    writer = spawn_writer(config)
    wait_committed(catalog_of(config), table, "tests", log_end(kafka.bootstrap, topic, 1), timeout=120, writer=writer)
    assert writer.stop() == 0, writer.log()
    return config


def _dead_letters(config: Path, table: str) -> list[dict[str, Any]]:
    rows = catalog_of(config).load_table(f"{table}__dlq").scan().to_arrow()
    return rows.select(["_kafka_offset", "reason", "message"]).to_pylist()


def _without_renames(config: Path, tmp_path: Path) -> Path:
    data = yaml.safe_load(config.read_text())
    data["tables"][0].pop("rename_columns")
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump(data))
    return plain


def test_json_fields_are_renamed_collisions_are_dead_letters_and_the_values_audit_passes(
    kafka, new_topic, spawn_writer, tmp_path
):
    topic = new_topic(1)
    table = "renamed.json_events"

    def value(n: int) -> bytes:
        record: dict[str, Any] = {"user_id": n, "amt": f"{n}.25", "nested": {"user_id": -n}}
        if n == COLLISION:
            record["uid"] = 0
        return json.dumps(record).encode()

    produce(kafka.bootstrap, topic, [(0, None, value(n), None) for n in range(RECORDS)])
    config = _written(kafka, spawn_writer, tmp_path, topic, table,
                      table_settings={"rename_columns": {"user_id": "uid", "amt": "amount"}})

    rows = catalog_of(config).load_table(table).scan().to_arrow()
    assert "user_id" not in rows.column_names and "amt" not in rows.column_names
    by_offset = {row["_kafka_offset"]: row for row in rows.to_pylist()}
    assert sorted(by_offset) == [n for n in range(RECORDS) if n != COLLISION]
    assert all(row["uid"] == n and row["amount"] == f"{n}.25" and row["nested"] == {"user_id": -n}
               for n, row in by_offset.items())

    [letter] = _dead_letters(config, table)
    assert letter["_kafka_offset"] == COLLISION and letter["reason"] == "rename_collision"
    assert "'user_id'" in letter["message"] and "'uid'" in letter["message"]

    assert_values_equal(audit_values_cli(config, topic, table))
    unrenamed = audit_values_cli(_without_renames(config, tmp_path), topic, table)
    assert unrenamed.returncode == 1 and "column uid" in unrenamed.stdout, unrenamed.stdout + unrenamed.stderr


SCHEMA = {"type": "record", "name": "Payment", "namespace": "renamed", "fields": [
    {"name": "id", "type": "long"}, {"name": "cents", "type": "long"},
    {"name": "payer", "type": {"type": "record", "name": "Payer", "fields": [{"name": "id", "type": "string"}]}}]}
# A later version that also carries the target name: each of its records holds both fields.
BOTH = {**SCHEMA, "fields": [*SCHEMA["fields"], {"name": "payment_id", "type": ["null", "long"], "default": None}]}


@pytest.fixture
def client(registry) -> Iterator[SchemaRegistryClient]:
    registry_client = SchemaRegistryClient({"url": registry.url})
    yield registry_client
    registry_client.close()


def test_avro_fields_are_renamed_collisions_are_dead_letters_and_the_values_audit_passes(
    kafka, registry, client, new_topic, spawn_writer, tmp_path
):
    topic = new_topic(1)
    table = "renamed.avro_payments"
    context = SerializationContext(topic, MessageField.VALUE)
    plain = AvroSerializer(client, json.dumps(SCHEMA), conf={"auto.register.schemas": True})
    both = AvroSerializer(client, json.dumps(BOTH), conf={"auto.register.schemas": True})

    def value(n: int) -> bytes:
        payment = {"id": n, "cents": n * 100, "payer": {"id": f"p{n}"}}
        return both({**payment, "payment_id": n}, context) if n == COLLISION else plain(payment, context)

    produce(kafka.bootstrap, topic, [(0, None, value(n), None) for n in range(RECORDS)])
    config = _written(kafka, spawn_writer, tmp_path, topic, table, schema_registry={"url": registry.url},
                      table_settings={"format": "avro", "rename_columns": {"id": "payment_id", "cents": "amount"}})

    rows = catalog_of(config).load_table(table).scan().to_arrow()
    assert rows.column_names[:3] == ["payment_id", "amount", "payer"]
    by_offset = {row["_kafka_offset"]: row for row in rows.to_pylist()}
    assert sorted(by_offset) == [n for n in range(RECORDS) if n != COLLISION]
    assert all(row["payment_id"] == n and row["amount"] == n * 100 and row["payer"] == {"id": f"p{n}"}
               for n, row in by_offset.items())

    [letter] = _dead_letters(config, table)
    assert letter["_kafka_offset"] == COLLISION and letter["reason"] == "rename_collision"
    assert "'id'" in letter["message"] and "'payment_id'" in letter["message"]

    assert_values_equal(audit_values_cli(config, topic, table))
    unrenamed = audit_values_cli(_without_renames(config, tmp_path), topic, table)
    # Unrenamed, the writer schema would need columns the table has under other names: every row differs.
    assert unrenamed.returncode == 1 and f"{RECORDS - 1} differ" in unrenamed.stdout, unrenamed.stdout
