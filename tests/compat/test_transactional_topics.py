"""Transactional producers against the real broker (docs/compatibility.md, brokers x features): records of
aborted transactions never reach a table; the offsets of commit and abort markers neither stall a partition,
nor leave a lag behind the last marker in `tabletopic status` and `/metrics`, nor end a backfill early.

Each transaction leaves one marker per partition it wrote to, so where each log ends is known in advance."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from tabletopic.commit.committer import table_offsets
from tabletopic.local.ports import free_port
from tests.support import audit_cli, catalog_of, log_end, wait_committed, writer_config

GROUP = "tests"
PARTITIONS = 2
DEADLINE_S = 60.0


class Transactions:
    """One transactional producer; `values` are {"n": ...} records, `kept` those of committed transactions."""

    def __init__(self, bootstrap: str, topic: str, partitions: int = PARTITIONS) -> None:
        self.topic = topic
        self.partitions = partitions
        self.producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"tx-{uuid.uuid4().hex}"})
        self.producer.init_transactions(60)
        self.kept: list[int] = []
        self.ends = dict.fromkeys(range(partitions), 0)  # per partition: where its log ends once the markers land
        self._next = 0

    def run(self, sizes: dict[int, int], commit: bool) -> None:
        """One transaction: `sizes[p]` records on partition p, committed or aborted."""
        self.producer.begin_transaction()
        numbers: list[int] = []
        for partition, size in sizes.items():
            for _ in range(size):
                self.producer.produce(self.topic, json.dumps({"n": self._next}).encode(), partition=partition)
                numbers.append(self._next)
                self._next += 1
            self.ends[partition] += size + 1  # its records and its marker
        assert self.producer.flush(60) == 0  # an abort drops what is not sent yet: the records reach the log
        if commit:
            self.producer.commit_transaction(60)
            self.kept.extend(numbers)
        else:
            self.producer.abort_transaction(60)

    def wait_markers(self, bootstrap: str) -> dict[tuple[str, int], int]:
        """The markers are written after the commit returns: the log ends where they say, within a deadline."""
        expected = {(self.topic, p): n for p, n in self.ends.items()}
        deadline = time.monotonic() + 30
        while log_end(bootstrap, self.topic, self.partitions) != expected and time.monotonic() < deadline:
            time.sleep(0.2)
        assert log_end(bootstrap, self.topic, self.partitions) == expected
        return expected


def wait_until(condition: Callable[[], bool], what: str, timeout: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"not within {timeout}s: {what}")


def lag_metrics(port: int, table: str) -> dict[int, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {int(sample.labels["partition"]): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples
            if sample.name == "tabletopic_consumer_lag_records" and sample.labels.get("table") == table}


def tabletopic(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tabletopic", *args], capture_output=True, text=True, timeout=120)


def test_markers_leave_no_lag_nor_stall_and_aborted_records_stay_out(kafka, new_topic, spawn_writer, tmp_path):
    topic = new_topic(PARTITIONS)
    table = "tx.events"
    transactions = Transactions(kafka.bootstrap, topic)
    transactions.run({0: 40, 1: 40}, commit=True)
    transactions.run({0: 25, 1: 25}, commit=False)
    transactions.run({0: 30, 1: 30}, commit=True)  # partition 0 ends on this commit marker
    transactions.run({1: 15}, commit=False)  # partition 1 on an abort marker
    ends = transactions.wait_markers(kafka.bootstrap)
    port = free_port()
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "wh",
                           http={"enabled": True, "host": "127.0.0.1", "port": port})
    writer = spawn_writer(config)
    catalog = catalog_of(config)
    # The table's offsets reach the log's end: past the last marker, not one short of it.
    wait_committed(catalog, table, GROUP, ends, timeout=DEADLINE_S, writer=writer)
    assert table_offsets(catalog.load_table(table), GROUP) == ends
    wait_until(lambda: lag_metrics(port, table) == {0: 0.0, 1: 0.0}, "/metrics shows no lag")

    # More transactions while the writer runs: nothing stalls behind the markers.
    transactions.run({0: 20, 1: 20}, commit=True)
    transactions.run({0: 10}, commit=False)
    ends = transactions.wait_markers(kafka.bootstrap)
    wait_committed(catalog, table, GROUP, ends, timeout=DEADLINE_S, writer=writer)
    assert table_offsets(catalog.load_table(table), GROUP) == ends
    wait_until(lambda: lag_metrics(port, table) == {0: 0.0, 1: 0.0}, "/metrics shows no lag after more")
    assert writer.stop() == 0, writer.log()

    values = catalog.load_table(table).scan(selected_fields=("n",)).to_arrow()["n"].to_pylist()
    assert sorted(values) == sorted(transactions.kept)  # every committed record once, no aborted one
    audit = audit_cli(config, topic, table)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    status = tabletopic("status", "--config", str(config), "--output", "json")
    assert status.returncode == 0, status.stderr[-2000:]
    [row] = json.loads(status.stdout)
    assert (row["table"], row["lag"], row["partitions_invalid"]) == (table, 0, 0)


def run_backfill(config: Path, topic: str, into: str, *range_: str) -> subprocess.CompletedProcess[str]:
    return tabletopic("backfill", "--config", str(config), "--topic", topic, "--table", "tx.live", "--into", into,
                      *range_)


def test_backfill_ranges_ending_on_markers_finish_at_their_end(kafka, new_topic, tmp_path):
    topic = new_topic(1)
    transactions = Transactions(kafka.bootstrap, topic, partitions=1)
    transactions.run({0: 10}, commit=True)  # 0..9, its marker at 10
    transactions.run({0: 5}, commit=False)  # 11..15, its abort marker at 16
    transactions.run({0: 5}, commit=True)  # 17..21, its marker at 22: the log ends at 23
    assert transactions.wait_markers(kafka.bootstrap) == {(topic, 0): 23}
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, "tx.live", tmp_path / "wh")
    catalog = catalog_of(config)

    def backfill_offsets() -> dict[tuple[str, int], int]:
        return table_offsets(catalog.load_table("tx.copy"), f"{GROUP}.backfill")

    # A range whose last offset is a commit marker, one of an aborted transaction and its marker only,
    # and one to the log's end (a marker again): each finishes, and the table's offsets reach its end.
    for first, end, records in ((0, 11, 10), (11, 17, 0), (17, 23, 5)):
        done = run_backfill(config, topic, "tx.copy", "--from-offset", str(first), "--to-offset", str(end))
        assert done.returncode == 0, done.stdout + done.stderr[-3000:]
        assert "the log ended at" not in done.stderr
        assert f"backfill done: {records} records" in done.stdout, done.stdout
        assert backfill_offsets() == {(topic, 0): end}
    values = catalog.load_table("tx.copy").scan(selected_fields=("n",)).to_arrow()["n"].to_pylist()
    assert sorted(values) == transactions.kept
