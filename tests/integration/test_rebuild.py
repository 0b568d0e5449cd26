"""`tabletopic rebuild`: a 500k-record table rebuilt under a new partition spec and a renamed column while
a producer keeps writing and the live writer keeps committing; the rebuild killed twice and its cutover
once; the live writer goes on in the new version; then a rollback. Every step audited value by value.

On the REST catalog over S3 (moto), a real broker; the writer and the rebuild as real processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyiceberg.catalog import Catalog

from tabletopic.commit.committer import table_offsets
from tabletopic.local.kafka import LocalKafka
from tabletopic.local.rest_catalog import LocalRestCatalog
from tests.support import Writer, audit_values_cli, catalog_of, log_end, produce, wait_committed, writer_config

PARTITIONS = 4
HISTORY = 500_000
TABLE = "shop.orders"
NEW_SETTINGS = {"partition_by": ["bucket(4, n)"], "rename_columns": {"name": "customer"}}


def value(n: int) -> bytes:
    return json.dumps({"n": n, "name": f"name-{n}", "qty": n % 97}).encode()


class Feed:
    """Produces a batch of new records every 0.3 s on a thread until stopped: the topic keeps growing."""

    def __init__(self, bootstrap: str, topic: str, first: int) -> None:
        self.next = first
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(bootstrap, topic))
        self._thread.start()

    def _run(self, bootstrap: str, topic: str) -> None:
        while not self._stop.is_set():
            start = self.next
            produce(bootstrap, topic, ((None, None, value(n), None) for n in range(start, start + 200)))
            self.next = start + 200
            time.sleep(0.3)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.next


def rebuild_cli(config: Path, *flags: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    import os

    return subprocess.Popen([sys.executable, "-m", "tabletopic", "rebuild", "--config", str(config), "--table", TABLE,
                             *flags], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def held(iceberg: Catalog, name: str, group: str = "tests") -> int:
    """Offsets the table holds, summed over its partitions (0: none, or no table)."""
    if not iceberg.table_exists(name):
        return 0
    return sum(table_offsets(iceberg.load_table(name), group).values())


def kill_when(process: subprocess.Popen[str], reached: Any, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not reached():
        if process.poll() is not None:
            raise AssertionError(f"the rebuild ended ({process.returncode}) early:\n{process.communicate()[1][-3000:]}")
        assert time.monotonic() < deadline, "the rebuild never got there"
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.communicate()


@pytest.fixture
def lake(kafka: LocalKafka, rest_catalog: LocalRestCatalog, new_topic: Any,
         tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    topic = new_topic(PARTITIONS)
    catalog = {"name": "lake", **rest_catalog.client_properties()}
    old = writer_config(tmp_path / "old.yaml", kafka.bootstrap, topic, TABLE, "", catalog=catalog,
                        commit={"interval_seconds": 1})
    new = writer_config(tmp_path / "new.yaml", kafka.bootstrap, topic, TABLE, "", catalog=catalog,
                        commit={"interval_seconds": 1}, table_settings=NEW_SETTINGS)
    yield topic, old, new


def test_a_rebuild_killed_twice_and_in_its_cutover_swaps_in_the_new_version_exactly_once_then_rolls_back(
        kafka: LocalKafka, lake: tuple[str, Path, Path]) -> None:
    topic, old, new = lake
    produce(kafka.bootstrap, topic, ((None, None, value(n), None) for n in range(HISTORY)))
    writer = Writer(old)
    iceberg = catalog_of(old)
    feed: Feed | None = None
    try:
        wait_committed(iceberg, TABLE, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), timeout=300, writer=writer)
        feed = Feed(kafka.bootstrap, topic, HISTORY)

        # Killed twice while building: each run resumes from what the last one committed.
        first = rebuild_cli(new)
        kill_when(first, lambda: held(iceberg, f"{TABLE}__rebuild") > 0)
        partial = held(iceberg, f"{TABLE}__rebuild")
        second = rebuild_cli(new)
        kill_when(second, lambda: held(iceberg, f"{TABLE}__rebuild") > partial)
        assert held(iceberg, f"{TABLE}__rebuild") < HISTORY, "the kills came too late to interrupt the build"

        # Killed in its cutover, after the first rename: NS.T is briefly gone, the live writer frozen.
        third = rebuild_cli(new, env={"TABLETOPIC_FAILPOINT": "cutover.renamed"})
        _out, err = third.communicate(timeout=600)
        assert third.returncode == -signal.SIGKILL, err[-3000:]
        assert not iceberg.table_exists(TABLE) and iceberg.table_exists(f"{TABLE}__previous")

        fourth = rebuild_cli(new)
        out, err = fourth.communicate(timeout=600)
        assert fourth.returncode == 0, err[-3000:]
        assert "completed the swap" in out, out

        # The live writer goes on in the new version, from the offsets it carries.
        writer.wait_for("table.projection_adopted", timeout=120)
        produced = feed.stop()
        feed = None
        wait_committed(iceberg, TABLE, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), timeout=300, writer=writer)
        table = iceberg.load_table(TABLE)
        assert [f.name for f in table.schema().fields][:3] == ["n", "customer", "qty"], table.schema()
        assert "bucket[4]" in str(table.spec()), table.spec()
        assert table.scan().count() == produced
        new_commits = [e for e in writer.named("commit.done") if e.get("table") == TABLE]
        assert new_commits, "the live writer made no commit"
        audit = audit_values_cli(new, topic, TABLE)
        assert audit.returncode == 0, audit.stdout + audit.stderr

        # Rolled back: the previous version is live again and takes what came meanwhile, once.
        back = subprocess.run([sys.executable, "-m", "tabletopic", "rebuild", "--config", str(old), "--table", TABLE,
                               "--rollback"], capture_output=True, text=True, timeout=300)
        assert back.returncode == 0, back.stderr[-3000:]
        adopted = len(writer.named("table.projection_adopted"))
        produce(kafka.bootstrap, topic, ((None, None, value(n), None) for n in range(produced, produced + 5000)))
        deadline = time.monotonic() + 120
        while len(writer.named("table.projection_adopted")) == adopted:
            assert time.monotonic() < deadline, writer.log()
            time.sleep(0.2)
        wait_committed(iceberg, TABLE, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), timeout=300, writer=writer)
        restored = iceberg.load_table(TABLE)
        assert "name" in [f.name for f in restored.schema().fields]
        assert restored.scan().count() == produced + 5000
        audit = audit_values_cli(old, topic, TABLE)
        assert audit.returncode == 0, audit.stdout + audit.stderr
        assert iceberg.table_exists(f"{TABLE}__previous")
        assert "customer" in [f.name for f in iceberg.load_table(f"{TABLE}__previous").schema().fields]
        assert writer.stop() == 0, writer.log()
    finally:
        if feed is not None:
            feed.stop()
        writer.kill()
