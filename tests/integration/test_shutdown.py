"""SIGTERM under a steady load, as Kubernetes sends it: the pool flushes, commits, leaves the group
and exits within `shutdown_timeout_seconds`; what it acknowledged to Kafka is in the table."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from tabletopic.commit.committer import table_offsets
from tabletopic.local.kafka import LocalKafka
from tests.support import Writer, assert_exactly_once, catalog_of, feed_slowly, log_end, wait_committed, writer_config

RECORDS = 30_000
PARTITIONS = 4
BOUND_S = 15.0
# The pool's parent waits for its workers, which stop by themselves at the bound.
PARENT_MARGIN_S = 3.0


def group_offsets(bootstrap: str, group: str, topic: str) -> dict[tuple[str, int], int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=30)
    finally:
        consumer.close()
    return {(tp.topic, tp.partition): tp.offset for tp in found if tp.offset >= 0}


def test_sigterm_during_load_commits_what_was_read_and_exits_within_the_bound(
    kafka: LocalKafka, new_topic: Callable[..., str], spawn_writer: Callable[..., Writer], tmp_path: Path,
) -> None:
    topic = new_topic(PARTITIONS)
    table = "shutdown.events"
    # A long interval: at SIGTERM the buffers hold everything read since the last commit.
    config = writer_config(tmp_path / "config.yaml", kafka.bootstrap, topic, table, tmp_path / "wh", workers=2,
                           shutdown_timeout_seconds=BOUND_S, commit={"interval_seconds": 30})
    writer = spawn_writer(config)
    writer.wait_for("supervisor.worker_started", timeout=120)
    # Fed once the pool is up (on a loaded machine its start may take longer than the whole feed): ~15 s.
    feeder = feed_slowly(kafka.bootstrap, topic, RECORDS, batch=500, pause_s=0.25)
    writer.wait_for("table.created", timeout=120)
    time.sleep(4)  # both workers in the group and reading, no commit yet
    assert feeder.is_alive(), "the load must still run at SIGTERM"

    started = time.monotonic()
    code = writer.stop(timeout=BOUND_S + 30)
    elapsed = time.monotonic() - started
    assert code == 0, writer.log()  # 3 would mean a worker hit the bound
    assert elapsed <= BOUND_S + PARENT_MARGIN_S, f"stopped in {elapsed:.1f}s"

    iceberg = catalog_of(config)
    in_table = table_offsets(iceberg.load_table(table), "tests")
    assert sum(in_table.values()) > 0
    # Every offset the workers acknowledged to the group is in the table, and nothing it holds is unacknowledged.
    assert group_offsets(kafka.bootstrap, "tests", topic) == in_table

    feeder.join()
    rest = spawn_writer(config)
    wait_committed(iceberg, table, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), writer=rest)
    assert rest.stop() == 0
    assert_exactly_once(iceberg, config, topic, table, RECORDS)
