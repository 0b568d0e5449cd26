"""Many workers in one group: kill -9 them again and again and scale 1 → 3 → 1 while records arrive."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import time
from pathlib import Path

from tests.support import assert_exactly_once, catalog_of, feed_slowly, log_end, wait_committed, writer_config

RECORDS = 300_000
PARTITIONS = 12


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def test_three_workers_killed_and_scaled_then_audit_passes(kafka, new_topic, spawn_writer, tmp_path):
    topic = new_topic(PARTITIONS)
    table = "workers.events"
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "warehouse",
                           commit={"interval_seconds": 1}, consumer={"batch_size": 5000})
    rng = random.Random(9)

    producer = feed_slowly(kafka.bootstrap, topic, RECORDS, 10_000, 1.0,
                           value=lambda n: json.dumps({"n": n, "pad": "y" * 80}).encode())

    # Scale 1 → 3: one single-worker replica, then a supervised pool of two more.
    single = spawn_writer(config)
    single.wait_for("commit.done", timeout=120)
    pool_config = writer_config(tmp_path / "pool.yaml", kafka.bootstrap, topic, table, tmp_path / "warehouse",
                                commit={"interval_seconds": 1}, consumer={"batch_size": 5000}, workers=2)
    pool = spawn_writer(pool_config)
    kills = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and kills < 6:
        time.sleep(rng.uniform(3, 6))
        workers = children(pool.process.pid)
        if workers:
            victim = rng.choice(workers)
            signal_kill(victim)
            kills += 1
    assert kills >= 4
    time.sleep(1)  # let the supervisor see the last kill before it is asked to stop
    # Back to 1: the pool stops gracefully; the single replica takes every partition.
    assert pool.stop(timeout=90) == 0, pool.log()
    assert len(pool.named("supervisor.worker_died")) >= kills - 1, pool.log()
    producer.join()

    ends = log_end(kafka.bootstrap, topic, PARTITIONS)
    assert sum(ends.values()) == RECORDS
    iceberg = catalog_of(config)
    wait_committed(iceberg, table, "tests", ends, timeout=300, writer=single)
    assert single.stop() == 0

    assert_exactly_once(iceberg, config, topic, table, RECORDS)


def signal_kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it may have died on its own a moment ago
        os.kill(pid, signal.SIGKILL)
