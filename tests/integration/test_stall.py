"""A worker whose loop stalls past max.poll.interval.ms (its commit blocked on a locked catalog) and
then resumes: another worker has taken its partitions, and the stalled one commits nothing overlapping."""

from __future__ import annotations

import sqlite3
import time

from tests.support import audit_cli, catalog_of, log_end, produce, wait_committed, writer_config

PARTITIONS = 4
RECORDS = 20_000


def records(start: int, count: int):
    return ((None, None, b'{"n": %d}' % n, None) for n in range(start, start + count))


def test_a_worker_stalled_past_max_poll_interval_commits_nothing_overlapping(
    kafka, new_topic, spawn_writer, tmp_path
):
    topic = new_topic(PARTITIONS)
    table = "stall.events"
    warehouse = tmp_path / "warehouse"
    settings = {"kafka": {"max.poll.interval.ms": "7000"}, "commit": {"interval_seconds": 1,
                                                                      "retry_deadline_seconds": 40}}
    stalled_config = writer_config(tmp_path / "a.yaml", kafka.bootstrap, topic, table, warehouse, **settings)
    other_config = writer_config(tmp_path / "b.yaml", kafka.bootstrap, topic, table, warehouse, **settings)
    iceberg = catalog_of(stalled_config)
    produce(kafka.bootstrap, topic, records(0, RECORDS))
    stalled = spawn_writer(stalled_config)
    wait_committed(iceberg, table, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), writer=stalled)

    # Lock the catalog: the next commit blocks in its retry loop and the loop stops polling.
    lock = sqlite3.connect(warehouse / "catalog.db", timeout=30)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        produce(kafka.bootstrap, topic, records(RECORDS, 5000))
        stalled.wait_for("commit.unavailable", timeout=60)
        time.sleep(9)  # past max.poll.interval.ms: the group drops the stalled member
    finally:
        lock.rollback()
        lock.close()
    other = spawn_writer(other_config)
    produce(kafka.bootstrap, topic, records(RECORDS + 5000, 5000))
    ends = log_end(kafka.bootstrap, topic, PARTITIONS)
    wait_committed(iceberg, table, "tests", ends, timeout=180, writer=other)
    time.sleep(3)
    assert stalled.stop() == 0, stalled.log()
    assert other.stop() == 0, other.log()
    # The group dropped the stalled worker, or the table fenced its late commit.
    after_stall = {e["event"] for e in stalled.events} & {"kafka.lost", "kafka.revoked", "commit.dropped_overlap"}
    assert after_stall, stalled.log()
    print("stalled worker:", sorted(after_stall))

    loaded = iceberg.load_table(table)
    assert sorted(loaded.scan(selected_fields=("n",)).to_arrow()["n"].to_pylist()) == list(range(RECORDS + 10_000))
    audit = audit_cli(other_config, topic, table)
    assert audit.returncode == 0, audit.stdout
