"""kill -9 an upsert writer again and again, once during a commit, while changes keep arriving and
`tabletopic compact` runs beside it: the table ends as the latest value per key, as a pure model says."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time

from tabletopic.catalog import reader
from tests.support import audit_cli, catalog_of, feed_slowly, log_end, wait_committed, writer_config

CHANGES = 200_000
KEYS = 20_000
PARTITIONS = 4
KILLS = 6
DELETES = 0.2


def changes(seed: int) -> list[tuple[bytes, bytes | None]]:
    rng = random.Random(seed)
    out = []
    for n in range(CHANGES):
        key = rng.randrange(KEYS)
        value = None if rng.random() < DELETES else json.dumps({"id": key, "n": n, "pad": "x" * 50}).encode()
        out.append((json.dumps({"id": key}).encode(), value))
    return out


def model(records: list[tuple[bytes, bytes | None]]) -> dict[int, int]:
    """Key → the `n` of its latest change, deleted keys absent. A key always lands on one partition (the
    producer hashes the key), and one producer keeps a partition's order: produce order is Kafka order."""
    state: dict[int, int] = {}
    for key, value in records:
        k = json.loads(key)["id"]
        if value is None:
            state.pop(k, None)
        else:
            state[k] = json.loads(value)["n"]
    return state


def compact_loop(config, table: str, stop: threading.Event, runs: list[int]) -> None:
    while not stop.is_set():
        done = subprocess.run([sys.executable, "-m", "tabletopic", "compact", "--config", str(config),
                               "--table", table], capture_output=True, text=True, timeout=300)
        runs.append(done.returncode)
        stop.wait(2.0)


def test_kill_9_an_upsert_writer_with_compaction_beside_it(kafka, new_topic, spawn_writer, tmp_path):
    topic = new_topic(PARTITIONS)
    table = "crash.state"
    config = writer_config(
        tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "warehouse",
        commit={"interval_seconds": 0.5}, consumer={"batch_size": 5000},
        table_settings={"mode": "upsert", "partition_by": ["bucket(4, id)"]},
    )
    records = changes(17)
    rng = random.Random(5)
    producer = feed_slowly(kafka.bootstrap, topic, CHANGES, 5000, 1.2,
                           value=lambda n: records[n][1], key=lambda n: records[n][0])
    stop = threading.Event()
    runs: list[int] = []
    compactor = threading.Thread(target=compact_loop, args=(config, table, stop, runs))
    kills_during_commit = 0
    try:
        for life in range(KILLS):
            writer = spawn_writer(config)
            writer.wait_for("commit.done", timeout=120)
            if life == 0:
                compactor.start()  # the table exists now
            if life % 2 == 0:
                writer.wait_for("commit.started", timeout=60)  # the snapshot may or may not land
                kills_during_commit += 1
            else:
                time.sleep(rng.uniform(0.0, 2.0))
            writer.kill()
        producer.join()
        ends = log_end(kafka.bootstrap, topic, PARTITIONS)
        assert sum(ends.values()) == CHANGES
        final = spawn_writer(config)
        catalog = catalog_of(config)
        wait_committed(catalog, table, "tests", ends, timeout=300, writer=final)
        assert final.stop() == 0
    finally:
        stop.set()
        if compactor.is_alive():
            compactor.join(timeout=320)
    assert kills_during_commit >= 1
    assert runs and all(code == 0 for code in runs), runs

    rows = reader.read(catalog.load_table(table), columns=["id", "n"]).to_pylist()
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} keys twice"
    assert {r["id"]: r["n"] for r in rows} == model(records)
    audit = audit_cli(config, topic, table)
    assert audit.returncode == 0, audit.stdout + audit.stderr
