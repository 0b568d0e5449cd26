"""The brokers of the compatibility matrix (docs/compatibility.md): Apache Kafka 4.1 (the session broker)
and 3.9 (the last 3.x line, KRaft), each with the core round trip and a rebalance under kill -9, every
record once and `tabletopic audit` clean."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tabletopic.local.kafka import KAFKA_3_9_VERSION, KAFKA_VERSION, LocalKafka, kafka_libs
from tabletopic.local.topics import create_topic
from tests.compat import harness
from tests.compat.harness import LakeUnderTest
from tests.support import Writer, assert_exactly_once, catalog_of, log_end, produce, wait_committed, writer_config

# test id -> the fixture starting that broker, and the version it runs
BROKERS = {"kafka-4.1": ("kafka", KAFKA_VERSION), "kafka-3.9": ("kafka_39", KAFKA_3_9_VERSION)}
PARTITIONS = 8
BATCH = 500  # every 0.5 s: about 1000 records a second, a few tens of thousands per test
AFTER_THE_KILL = 4  # batches produced once the killed writer's partitions are back with the pool


@pytest.fixture(scope="session")
def kafka_39(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    if not (kafka_libs(KAFKA_3_9_VERSION) / f"kafka_2.13-{KAFKA_3_9_VERSION}.jar").exists():
        pytest.fail("Apache Kafka 3.9's jars are not fetched: .venv/bin/python -c 'from tabletopic.local "
                    f"import kafka; kafka.fetch(version=\"{KAFKA_3_9_VERSION}\")'")
    broker = LocalKafka(tmp_path_factory.mktemp("kafka-3.9"), version=KAFKA_3_9_VERSION).start()
    yield broker
    broker.stop()


@pytest.fixture(params=list(BROKERS))
def broker(request: pytest.FixtureRequest) -> LocalKafka:
    fixture, version = BROKERS[request.param]
    broker: LocalKafka = request.getfixturevalue(fixture)
    assert broker.version == version
    # What the running broker formatted its log with, e.g. "metadata.version 3.9-IV0": these jars, not others.
    major_minor = ".".join(version.split(".")[:2])
    assert f"metadata.version {major_minor}-" in (broker.workdir / "server.log").read_text()
    return broker


@pytest.fixture
def topic_on(broker: LocalKafka) -> Callable[..., str]:
    """As the session's `new_topic`, on the broker under test."""
    def make(partitions: int = 4, prefix: str = "t") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        create_topic(broker.bootstrap, name, partitions)
        return name

    return make


def _sqlite_lake(warehouse: Path) -> LakeUnderTest:
    return LakeUnderTest("sqlite", {"warehouse": str(warehouse)}, pause=contextlib.nullcontext)


def test_round_trip(broker: LocalKafka, topic_on: Callable[..., str], spawn_writer: Callable[..., Writer],
                    tmp_path: Path) -> None:
    harness.round_trip(_sqlite_lake(tmp_path / "warehouse"), broker, topic_on, spawn_writer, tmp_path)


def test_rebalance_as_a_writer_joins_and_one_is_killed(broker: LocalKafka, topic_on: Callable[..., str],
                                                       spawn_writer: Callable[..., Writer], tmp_path: Path) -> None:
    """A pool of two workers, then a second writer joins the group mid-stream and takes partitions from them;
    then that writer is kill -9'd mid-commit and the pool takes its partitions back: each record once."""
    topic, table = topic_on(PARTITIONS), "brokers.events"
    settings = {"commit": {"interval_seconds": 0.5}, "consumer": {"batch_size": 1000}}
    pool_config = writer_config(tmp_path / "pool.yaml", broker.bootstrap, topic, table, tmp_path / "warehouse",
                                workers=2, **settings)
    joiner_config = writer_config(tmp_path / "joiner.yaml", broker.bootstrap, topic, table, tmp_path / "warehouse",
                                  **settings)
    with _feeding(broker.bootstrap, topic) as fed:
        pool = spawn_writer(pool_config)
        pool.wait_for("commit.done", timeout=180)
        joiner = spawn_writer(joiner_config)
        joiner.wait_for("commit.done", timeout=180)  # it holds partitions now: the group rebalanced
        assert pool.named("kafka.revoked") or pool.named("kafka.lost"), pool.log()
        joiner.wait_for("commit.started", timeout=120)
        joiner.kill()
        fed.more(AFTER_THE_KILL)
    records = fed.count
    print(f"Kafka {broker.version}: {records} records through a join and a kill -9")

    ends = log_end(broker.bootstrap, topic, PARTITIONS)
    assert sum(ends.values()) == records
    iceberg = catalog_of(pool_config)
    wait_committed(iceberg, table, "tests", ends, timeout=180, writer=pool)
    assert pool.stop() == 0, pool.log()
    assert_exactly_once(iceberg, pool_config, topic, table, records)


class _Feed:
    """Batches of `{"n": ...}` produced on a thread until stopped: records keep arriving through each step of
    a test however long the steps take on a loaded machine."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap, self.topic, self.count = bootstrap, topic, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._batch()
            self._stop.wait(0.5)

    def _batch(self) -> None:
        numbers = range(self.count, self.count + BATCH)
        pad = "q" * 60
        produce(self.bootstrap, self.topic, ((None, None, json.dumps({"n": n, "pad": pad}).encode(), None)
                                             for n in numbers))
        self.count += BATCH

    def more(self, batches: int) -> None:
        """Wait until `batches` more batches have been produced."""
        target = self.count + batches * BATCH
        deadline = time.monotonic() + 120
        while self.count < target:
            assert self._thread.is_alive() and time.monotonic() < deadline, f"the feed stopped at {self.count}"
            time.sleep(0.1)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(120)


@contextlib.contextmanager
def _feeding(bootstrap: str, topic: str) -> Iterator[_Feed]:
    feed = _Feed(bootstrap, topic)
    feed.start()
    try:
        yield feed
    finally:
        feed.stop()
