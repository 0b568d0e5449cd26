"""format: protobuf (issue 20) through a real Schema Registry (Apicurio's Confluent API): a .proto importing
another registered .proto, three schema versions produced interleaved into one topic, read back value-exact
by pyiceberg; a wrong message index and a garbage body are dead letters, the rest rows; `tabletopic audit`
and `audit --values` agree; dead letters of a too-tight `max_items` replay once it is raised."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pyarrow as pa
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from tabletopic.deadletter.rows import dlq_identifier
from tests.protobuf_fixtures import assert_rows, framed, register_versions, serialized
from tests.support import (
    audit_cli,
    audit_values_cli,
    catalog_of,
    log_end,
    produce,
    wait_committed,
    writer_config,
)

RECORDS = 3000
PARTITIONS = 2


@pytest.fixture
def client(registry) -> Iterator[SchemaRegistryClient]:
    registry_client = SchemaRegistryClient({"url": registry.url})
    yield registry_client
    registry_client.close()


def test_protobuf_versions_with_imports_round_trip(kafka, registry, client, new_topic, spawn_writer, tmp_path):
    topic = new_topic(PARTITIONS)
    table = "proto.orders"
    ids, classes = register_versions(client, topic)
    values = [(i % PARTITIONS, str(i).encode(), framed(ids[i % 3], serialized(classes, i))) for i in range(RECORDS)]
    bad_index = framed(ids[2], serialized(classes, 2), (3,))  # the file has one message
    garbage = framed(ids[0], b"\x0a\xff\xff\xff")  # a length past the end of the body
    values[1000:1000] = [(0, b"bad-index", bad_index), (1, b"garbage", garbage)]
    produce(kafka.bootstrap, topic, ((p, k, v, None) for p, k, v in values))
    ends = log_end(kafka.bootstrap, topic, PARTITIONS)

    settings = {"format": "protobuf", "max_items": 4}
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "warehouse",
                           schema_registry={"url": registry.url}, table_settings=settings)
    writer = spawn_writer(config)
    iceberg = catalog_of(config)
    wait_committed(iceberg, table, "tests", ends, timeout=120, writer=writer)
    assert writer.stop() == 0, writer.log()

    letters = iceberg.load_table(dlq_identifier(table)).scan().to_arrow()
    by_key = dict(zip(letters["_kafka_key"].to_pylist(), letters["reason"].to_pylist(), strict=True))
    assert by_key.pop(b"bad-index") == "unknown_message_index"
    assert by_key.pop(b"garbage") == "undecodable_protobuf"
    too_many = {str(i).encode() for i in range(0, RECORDS, 50)}
    assert by_key == dict.fromkeys(too_many, "too_many_items")

    loaded = iceberg.load_table(table)
    assert loaded.schema().as_arrow().field("at").type == pa.timestamp("us", tz="UTC")
    assert_rows(loaded.scan().to_arrow(), [i for i in range(RECORDS) if i % 50])
    audit = audit_cli(config, topic, table)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    values = audit_values_cli(config, topic, table)
    assert values.returncode == 0, values.stdout + values.stderr
    assert " 0 differ" in values.stdout, values.stdout

    # The fix: a max_items the records fit; their dead letters replay, once.
    fixed = writer_config(tmp_path / "fixed.yaml", kafka.bootstrap, topic, table, tmp_path / "warehouse",
                          schema_registry={"url": registry.url}, table_settings={"format": "protobuf"})
    replayed = subprocess.run([sys.executable, "-m", "tabletopic", "dlq", "replay", "--config", str(fixed),
                               "--table", table, "--reason", "too_many_items"],
                              capture_output=True, text=True, timeout=120)
    assert replayed.returncode == 0, replayed.stderr
    assert f"replayed: {len(too_many)} (appended {len(too_many)})" in replayed.stdout, replayed.stdout
    assert_rows(iceberg.load_table(table).scan().to_arrow(), list(range(RECORDS)))
    left = iceberg.load_table(dlq_identifier(table)).scan().to_arrow()["reason"].to_pylist()
    assert sorted(left) == ["undecodable_protobuf", "unknown_message_index"]

