"""kill -9 the writer again and again, once during a commit, while records keep arriving; nothing lost or doubled."""

from __future__ import annotations

import json
import random
import time

from tests.support import (
    assert_values_equal,
    audit_values_cli,
    catalog_of,
    feed_slowly,
    log_end,
    wait_committed,
    writer_config,
)

RECORDS = 200_000
PARTITIONS = 4
KILLS = 6


def test_kill_9_at_random_moments_then_audit_passes(kafka, new_topic, spawn_writer, tmp_path):
    topic = new_topic(PARTITIONS)
    table = "crash.events"
    config = writer_config(
        tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "warehouse",
        commit={"interval_seconds": 0.5}, consumer={"batch_size": 5000},
    )
    rng = random.Random(5)

    # ~50 s of input, so every kill lands while records are still arriving.
    producer = feed_slowly(kafka.bootstrap, topic, RECORDS, 5000, 1.2,
                           value=lambda n: json.dumps({"n": n, "pad": "x" * 100}).encode())
    kills_during_commit = 0
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
    assert kills_during_commit >= 1
    producer.join()

    ends = log_end(kafka.bootstrap, topic, PARTITIONS)
    assert sum(ends.values()) == RECORDS
    final = spawn_writer(config)
    iceberg = catalog_of(config)
    wait_committed(iceberg, table, "tests", ends, timeout=300, writer=final)
    assert final.stop() == 0

    values = iceberg.load_table(table).scan(selected_fields=("n",)).to_arrow()["n"].to_pylist()
    assert sorted(values) == list(range(RECORDS))
    # Each offset once, and each row holds its own record (values and metadata), not a neighbour's.
    assert_values_equal(audit_values_cli(config, topic, table))
