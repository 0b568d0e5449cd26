"""Avro in the Confluent wire format through a real Schema Registry (Apicurio's Confluent API):
round trip, an unknown schema id, and a writer schema with references."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pyarrow as pa
import pytest
from confluent_kafka.schema_registry import Schema, SchemaReference, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from tabletopic.commit.committer import table_offsets
from tabletopic.deadletter.rows import dlq_identifier
from tests.support import audit_cli, catalog_of, log_end, produce, wait_committed, writer_config

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


def serializer(client: SchemaRegistryClient, topic: str) -> tuple[AvroSerializer, SerializationContext]:
    serialize = AvroSerializer(client, json.dumps(SCHEMA), conf={"auto.register.schemas": True})
    return serialize, SerializationContext(topic, MessageField.VALUE)


def write_through_a_writer(kafka, registry, spawn_writer, tmp_path, topic, table, values):  # type: ignore[no-untyped-def]
    """`values` into partition 0 of `topic`, then a writer of the Avro `table` until it holds the log end, stopped."""
    produce(kafka.bootstrap, topic, ((0, None, value, None) for value in values))
    ends = log_end(kafka.bootstrap, topic, 1)
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "warehouse",
                           schema_registry={"url": registry.url}, table_settings={"format": "avro"})
    writer = spawn_writer(config)
    iceberg = catalog_of(config)
    wait_committed(iceberg, table, "tests", ends, timeout=120, writer=writer)
    assert writer.stop() == 0, writer.log()
    return iceberg


@pytest.fixture
def client(registry) -> Iterator[SchemaRegistryClient]:
    registry_client = SchemaRegistryClient({"url": registry.url})
    yield registry_client
    registry_client.close()


def test_avro_topic_round_trip(kafka, registry, client, new_topic, spawn_writer, tmp_path):
    topic = new_topic(PARTITIONS)
    table = "rt.avro_payments"
    serialize, context = serializer(client, topic)
    produce(kafka.bootstrap, topic, ((None, str(i).encode(), serialize(payment(i), context), None)
                                     for i in range(RECORDS)))
    ends = log_end(kafka.bootstrap, topic, PARTITIONS)
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "warehouse",
                           schema_registry={"url": registry.url}, table_settings={"format": "avro"})
    writer = spawn_writer(config)
    iceberg = catalog_of(config)
    wait_committed(iceberg, table, "tests", ends, timeout=300, writer=writer)
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


def test_an_unknown_schema_id_stops_the_writer_naming_the_record(
    kafka, registry, client, new_topic, spawn_writer, tmp_path
):
    topic = new_topic(2)
    table = "bad.avro_payments"
    serialize, context = serializer(client, topic)
    produce(kafka.bootstrap, topic, ((i % 2, None, serialize(payment(i), context), None) for i in range(200)))
    bad_offset = log_end(kafka.bootstrap, topic, 2)[(topic, 0)]
    produce(kafka.bootstrap, topic, [(0, None, b"\x00\x00\x0f\x42\x3f" + b"\x02" * 20, None)])  # schema id 999999
    produce(kafka.bootstrap, topic, ((i % 2, None, serialize(payment(i), context), None) for i in range(200, 240)))
    ends = log_end(kafka.bootstrap, topic, 2)
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "warehouse",
                           schema_registry={"url": registry.url},
                           table_settings={"format": "avro", "errors": "fail"}, commit={"interval_seconds": 60})
    writer = spawn_writer(config)
    assert writer.wait_exit(timeout=120) == 1, writer.log()
    bad = writer.named("record.bad")
    assert [(e["topic"], e["partition"], e["offset"]) for e in bad] == [(topic, 0, bad_offset)], writer.log()
    assert "unknown schema id 999999" in bad[0]["reason"]
    committed = table_offsets(catalog_of(config).load_table(table), "tests")
    assert committed == {(topic, 0): bad_offset, (topic, 1): ends[(topic, 1)]}


def test_a_writer_schema_with_references_makes_dead_letters_not_a_crash_loop(
    kafka, registry, client, new_topic, spawn_writer, tmp_path
):
    """fastavro cannot parse a schema that references another subject's type: its records used to raise
    out of decode and crash-loop the writer; they are dead letters, and the records around them rows."""
    topic = new_topic(1)
    table = "refs.avro_payments"
    line = {"type": "record", "name": "Line", "namespace": "tests", "fields": [{"name": "sku", "type": "string"}]}
    client.register_schema(f"{topic}-line", Schema(json.dumps(line), "AVRO"))
    line_version = client.get_latest_version(f"{topic}-line").version
    order = {"type": "record", "name": "Order", "namespace": "tests",
             "fields": [{"name": "line", "type": "tests.Line"}]}
    referencing = client.register_schema(f"{topic}-order", Schema(
        json.dumps(order), "AVRO", [SchemaReference("tests.Line", f"{topic}-line", line_version)]))
    serialize, context = serializer(client, topic)
    values = [serialize(payment(0), context), struct.pack(">bI", 0, referencing) + b"\x06abc",
              serialize(payment(2), context)]
    iceberg = write_through_a_writer(kafka, registry, spawn_writer, tmp_path, topic, table, values)
    assert sorted(iceberg.load_table(table).scan(selected_fields=("id",)).to_arrow()["id"].to_pylist()) == [0, 2]
    letters = iceberg.load_table(dlq_identifier(table)).scan(
        selected_fields=("_kafka_offset", "reason", "message")).to_arrow().to_pylist()
    assert [(r["_kafka_offset"], r["reason"]) for r in letters] == [(1, "incompatible_schema")]
    assert "schema references are not supported" in letters[0]["message"], letters


def test_hostile_avro_records_are_dead_letters_among_rows(kafka, registry, client, new_topic, spawn_writer, tmp_path):
    """Issue 15: a decimal wider than Iceberg's 38 digits, 12 bytes declaring 10^8 items that take no
    bytes, and a record past the default max_items are dead letters; the records around them are rows."""
    topic = new_topic(1)
    table = "hostile.avro_payments"
    wide = {"type": "record", "name": "Wide", "namespace": "tests", "fields": [
        {"name": "id", "type": "long"},
        {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 40, "scale": 2}}]}
    hollow = {"type": "record", "name": "Hollow", "namespace": "tests", "fields": [
        {"name": "id", "type": "long"},
        {"name": "xs", "type": {"type": "array", "items": {"type": "fixed", "name": "Nothing", "size": 0}}}]}
    wide_id = client.register_schema(f"{topic}-wide", Schema(json.dumps(wide), "AVRO"))
    hollow_id = client.register_schema(f"{topic}-hollow", Schema(json.dumps(hollow), "AVRO"))
    serialize, context = serializer(client, topic)
    values = [
        serialize(payment(0), context),
        struct.pack(">bI", 0, wide_id) + b"\x02\x02\x7b",  # id 1, amount 1.23
        struct.pack(">bI", 0, hollow_id) + b"\x04" + b"\x80\x84\xaf\x5f" + b"\x00",  # id 2, 10^8 items
        serialize({**payment(3), "labels": [""] * 100_001}, context),
        serialize(payment(4), context),
    ]
    iceberg = write_through_a_writer(kafka, registry, spawn_writer, tmp_path, topic, table, values)
    rows = iceberg.load_table(table).scan().to_arrow()
    assert sorted(rows["id"].to_pylist()) == [0, 4]
    assert "xs" not in rows.schema.names and rows.schema.field("amount").type == pa.decimal128(12, 2)
    letters = iceberg.load_table(dlq_identifier(table)).scan(
        selected_fields=("_kafka_offset", "reason", "message")).to_arrow().sort_by("_kafka_offset").to_pylist()
    assert [(r["_kafka_offset"], r["reason"]) for r in letters] == [
        (1, "incompatible_schema"), (2, "incompatible_schema"), (3, "too_many_items")], letters
    assert "precision=40" in letters[0]["message"] and "'amount'" in letters[0]["message"]
    assert "takes no bytes" in letters[1]["message"]
