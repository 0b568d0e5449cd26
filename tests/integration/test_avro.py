"""Avro in the Confluent wire format through a Schema Registry: round trip, and an unknown schema id."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from tabletopic.commit.committer import table_offsets
from tabletopic.config import load_config
from tabletopic.kafka.registry import SchemaRegistry
from tabletopic.service import Service
from tests.integration.support import audit_cli, catalog_of, log_end, produce, wait_committed, writer_config

RECORDS = 100_000
PARTITIONS = 4
SCHEMA = {
    "type": "record", "name": "Payment", "namespace": "tests", "fields": [
        {"name": "id", "type": "long"},
        {"name": "account", "type": "string"},
        {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}},
        {"name": "rate", "type": "double"},
        {"name": "count", "type": "int"},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "memo", "type": ["null", "string"], "default": None},
        {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "DONE"]}},
        {"name": "payer", "type": {"type": "record", "name": "Payer", "fields": [
            {"name": "name", "type": "string"}, {"name": "country", "type": "string"}]}},
        {"name": "labels", "type": {"type": "array", "items": "string"}},
        {"name": "attrs", "type": {"type": "map", "values": "long"}},
    ],
}
START = datetime(2026, 3, 1, tzinfo=UTC)


def payment(i: int) -> dict:
    return {
        "id": i, "account": f"acct-{i % 977}", "amount": Decimal(i % 100000) / 100, "rate": i / 7,
        "count": i % 1000, "at": START + timedelta(microseconds=i * 1001), "memo": None if i % 4 else f"m{i}",
        "status": "DONE" if i % 2 else "NEW", "payer": {"name": f"p{i % 31}", "country": "NL"},
        "labels": [f"l{i % 5}"] * (i % 3), "attrs": {"a": i} if i % 2 else {},
    }


class InProcessWriter:
    """The service in a thread of the test process, sharing the producer's registry client."""

    def __init__(self, config_path: Path, client: SchemaRegistryClient) -> None:
        config = load_config(config_path, environ={})
        assert config.schema_registry.url is not None
        self.service = Service(config, registry=SchemaRegistry(config.schema_registry.url, client=client))
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.code = self.service.run()

    def alive(self) -> bool:
        return self.thread.is_alive()

    def stop(self) -> int | None:
        self.service.stop()
        self.thread.join(60)
        return self.code


def serializer(client: SchemaRegistryClient, topic: str) -> tuple[AvroSerializer, SerializationContext]:
    serialize = AvroSerializer(client, json.dumps(SCHEMA), conf={"auto.register.schemas": True})
    return serialize, SerializationContext(topic, MessageField.VALUE)


def registry_client(url: str) -> SchemaRegistryClient:
    return SchemaRegistryClient.new_client({"url": url})


def test_avro_topic_round_trip(kafka, new_topic, tmp_path):
    topic = new_topic(PARTITIONS)
    table = "rt.avro_payments"
    registry_url = "mock://tabletopic-avro-roundtrip"
    client = registry_client(registry_url)
    serialize, context = serializer(client, topic)
    produce(kafka.bootstrap, topic, ((None, str(i).encode(), serialize(payment(i), context), None)
                                     for i in range(RECORDS)))
    ends = log_end(kafka.bootstrap, topic, PARTITIONS)
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "warehouse",
                           schema_registry={"url": registry_url}, table_settings={"format": "avro"})
    writer = InProcessWriter(config, client)
    iceberg = catalog_of(config)
    wait_committed(iceberg, table, "tests", ends, timeout=300, alive=writer.alive)
    assert writer.stop() == 0

    rows = iceberg.load_table(table).scan().to_arrow()
    assert rows.num_rows == RECORDS
    assert rows.schema.field("amount").type == pa.decimal128(12, 2)
    assert rows.schema.field("at").type == pa.timestamp("us", tz="UTC")
    for row in rows.to_pylist():
        expected = payment(row["id"])
        expected["attrs"] = list(expected["attrs"].items())
        assert {k: row[k] for k in expected} == expected
        assert row["_kafka_key"] == str(row["id"]).encode()
    audit = audit_cli(config, topic, table)
    assert audit.returncode == 0, audit.stdout


def test_an_unknown_schema_id_stops_the_writer_naming_the_record(kafka, new_topic, tmp_path):
    topic = new_topic(2)
    table = "bad.avro_payments"
    registry_url = "mock://tabletopic-avro-bad"
    client = registry_client(registry_url)
    serialize, context = serializer(client, topic)
    produce(kafka.bootstrap, topic, ((i % 2, None, serialize(payment(i), context), None) for i in range(200)))
    bad_offset = log_end(kafka.bootstrap, topic, 2)[(topic, 0)]
    produce(kafka.bootstrap, topic, [(0, None, b"\x00\x00\x00\x03\xe7" + b"\x02" * 20, None)])  # schema id 999
    produce(kafka.bootstrap, topic, ((i % 2, None, serialize(payment(i), context), None) for i in range(200, 240)))
    ends = log_end(kafka.bootstrap, topic, 2)
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "warehouse",
                           schema_registry={"url": registry_url}, table_settings={"format": "avro"},
                           commit={"interval_seconds": 60})
    writer = InProcessWriter(config, client)
    writer.thread.join(120)
    assert writer.code == 1
    failure = writer.service.failure
    assert failure is not None
    assert (failure.topic, failure.partition, failure.offset) == (topic, 0, bad_offset)
    assert "unknown schema id 999" in failure.reason
    committed = table_offsets(catalog_of(config).load_table(table), "tests")
    assert committed == {(topic, 0): bad_offset, (topic, 1): ends[(topic, 1)]}
