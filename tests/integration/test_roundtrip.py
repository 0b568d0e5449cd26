"""Every record once in its table, values equal, metadata columns right: local warehouse and S3."""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest

from tests.support import audit_cli, catalog_of, log_end, produce, wait_committed, writer_config

RECORDS = 100_000
PARTITIONS = 4


def json_events(count: int) -> list[tuple[int | None, bytes, bytes, Any]]:
    rng = random.Random(11)
    records = []
    for i in range(count):
        event = {
            "id": i,
            "user": f"u{rng.randrange(5000)}",
            "amount": round(rng.uniform(-100, 100), 3),
            "ok": rng.random() < 0.5,
            "device": {"os": rng.choice(["ios", "android"]), "version": rng.randrange(30)},
            "tags": [rng.choice("abcdef") for _ in range(rng.randrange(3))],
        }
        headers = [("trace", f"t{i}".encode())] if i % 3 == 0 else None
        records.append((None, f"k{i}".encode(), json.dumps(event).encode(), headers))
    return records


@pytest.mark.parametrize("store", ["local", "s3"])
def test_json_topic_round_trip(store, kafka, request, new_topic, spawn_writer, tmp_path):
    topic = new_topic(PARTITIONS)
    table = f"rt.json_{store}"
    if store == "s3":
        s3 = request.getfixturevalue("s3")
        bucket = f"wh-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(bucket)
        catalog = {"uri": f"sqlite:///{tmp_path}/catalog.db", "warehouse": f"s3://{bucket}/wh",
                   **s3.catalog_properties()}
    else:
        catalog = {"warehouse": str(tmp_path / "warehouse")}
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, "", catalog=catalog)
    records = json_events(RECORDS)
    started = datetime.now(UTC)
    produce(kafka.bootstrap, topic, records)
    ends = log_end(kafka.bootstrap, topic, PARTITIONS)
    assert sum(ends.values()) == RECORDS

    writer = spawn_writer(config)
    iceberg = catalog_of(config)
    wait_committed(iceberg, table, "tests", ends, writer=writer)
    assert writer.stop() == 0

    rows = iceberg.load_table(table).scan().to_arrow()
    assert rows.num_rows == RECORDS
    assert rows.schema.field("_kafka_timestamp").type == pa.timestamp("us", tz="UTC")
    expected = {i: json.loads(value) for i, (_, _, value, _) in enumerate(records)}
    seen: set[tuple[int, int]] = set()
    for row in rows.to_pylist():
        event = expected[row["id"]]
        assert {k: row[k] for k in event} == event
        assert row["_kafka_topic"] == topic
        assert row["_kafka_key"] == f"k{row['id']}".encode()
        assert row["_kafka_timestamp"] >= started.replace(microsecond=0)
        headers = dict(row["_kafka_headers"] or [])
        assert headers == ({"trace": f"t{row['id']}".encode()} if row["id"] % 3 == 0 else {})
        seen.add((row["_kafka_partition"], row["_kafka_offset"]))
    assert len(seen) == RECORDS
    assert seen == {(p, o) for (_, p), end in ends.items() for o in range(end)}

    audit = audit_cli(config, topic, table)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert "audit: OK" in audit.stdout
