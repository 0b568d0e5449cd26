"""kill -9 a `format: protobuf` writer again and again, twice as a commit starts, while Protobuf records of three
interleaved schema versions (one importing another registered file) keep arriving: afterwards `tabletopic audit`
passes, and the table holds every record once, value-exact (tests/protobuf_fixtures.py)."""

from __future__ import annotations

import random
import time

from confluent_kafka.schema_registry import SchemaRegistryClient

from tests.protobuf_fixtures import assert_rows, record_value, register_versions
from tests.support import (
    assert_values_equal,
    audit_cli,
    audit_values_cli,
    catalog_of,
    feed_slowly,
    log_end,
    wait_committed,
    writer_config,
)

RECORDS = 30_000
PARTITIONS = 3
KILLS = 3


def test_kill_9_a_protobuf_writer_then_audit_passes(kafka, registry, new_topic, spawn_writer, tmp_path):
    topic = new_topic(PARTITIONS)
    table = "crash.proto_orders"
    client = SchemaRegistryClient({"url": registry.url})
    try:
        ids, classes = register_versions(client, topic)
    finally:
        client.close()
    values = [record_value(ids, classes, n) for n in range(RECORDS)]
    config = writer_config(
        tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "warehouse",
        commit={"interval_seconds": 0.5}, consumer={"batch_size": 2000},
        schema_registry={"url": registry.url}, table_settings={"format": "protobuf"},
    )
    rng = random.Random(7)

    # ~15 s of input, so every kill lands while records are still arriving.
    producer = feed_slowly(kafka.bootstrap, topic, RECORDS, 2000, 1.0,
                           value=lambda n: values[n], key=lambda n: str(n).encode())
    kills_during_commit = 0
    try:
        for life in range(KILLS):
            writer = spawn_writer(config)
            writer.wait_for("commit.done", timeout=120)
            if life % 2 == 0:
                # Kill right as the next commit starts: the snapshot may or may not land.
                writer.wait_for("commit.started", timeout=60)
                kills_during_commit += 1
            else:
                time.sleep(rng.uniform(0.0, 2.0))
            writer.kill()
    finally:
        producer.join()
    assert kills_during_commit >= 1

    ends = log_end(kafka.bootstrap, topic, PARTITIONS)
    assert sum(ends.values()) == RECORDS
    final = spawn_writer(config)
    iceberg = catalog_of(config)
    wait_committed(iceberg, table, "tests", ends, timeout=120, writer=final)
    assert final.stop() == 0, final.log()

    assert not iceberg.table_exists(f"{table}__dlq"), "no record may be a dead letter"
    assert_rows(iceberg.load_table(table).scan().to_arrow(), list(range(RECORDS)))
    audit = audit_cli(config, topic, table)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    # Each offset once, and each row holds its own record's decoded values, not a neighbour's.
    assert_values_equal(audit_values_cli(config, topic, table))
