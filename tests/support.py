"""Helpers for integration tests: the writer as a real process, producing, waiting on the table."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Consumer, Producer, TopicPartition
from pyiceberg.catalog import Catalog

from tabletopic.catalog.loader import open_catalog
from tabletopic.commit.committer import table_offsets
from tabletopic.config import load_config

# Writers in tests leave a killed member's partitions after 6 s (the broker's minimum), not 45 s.
FAST_GROUP = {"session.timeout.ms": "6000", "heartbeat.interval.ms": "1000"}


def writer_config(
    path: Path, bootstrap: str, topic: str, table: str, warehouse: Path | str, **overrides: Any
) -> Path:
    config: dict[str, Any] = {
        "kafka": {"bootstrap.servers": bootstrap, **FAST_GROUP, **overrides.pop("kafka", {})},
        "group_id": overrides.pop("group_id", "tests"),
        "workers": overrides.pop("workers", 1),
        "catalog": overrides.pop("catalog", {"warehouse": str(warehouse)}),
        "commit": {"interval_seconds": 1, **overrides.pop("commit", {})},
        # Off unless a test is about it: it is a process of its own, and these tests are about the writer.
        "maintenance": {"enabled": False, **overrides.pop("maintenance", {})},
        # Off unless a test is about it: several writers at once would want the same port.
        "http": {"enabled": False, **overrides.pop("http", {})},
        "tables": [{"table": table, "topic": topic, **overrides.pop("table_settings", {})}],
    }
    config.update(overrides)
    path.write_text(yaml.safe_dump(config))
    return path


def catalog_of(config_path: Path) -> Catalog:
    return open_catalog(load_config(config_path, environ={}).catalog)


class Writer:
    """`tabletopic run --config FILE` as a child process; its JSON log lines are collected."""

    def __init__(self, config_path: Path, env: Mapping[str, str] | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self._lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stderr_text: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tabletopic", "run", "--config", str(config_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, **(env or {})},
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        # ValueError/OSError: the pipe was closed under the reader (a killed writer's teardown).
        with contextlib.suppress(ValueError, OSError):
            self._read_lines(self.process.stderr)

    def _read_lines(self, stderr: Any) -> None:
        for raw in stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            self.stderr_text.append(line)
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                self.events.append(event)
                self._lines.put(event)

    def wait_for(self, event: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.1)
            except queue.Empty:
                if self.process.poll() is not None and self._lines.empty() and not self._reader.is_alive():
                    code = self.process.returncode
                    raise AssertionError(f"writer exited ({code}) before {event}:\n{self.log()}") from None
                continue
            if line.get("event") == event:
                return line
        raise AssertionError(f"no {event} within {timeout}s:\n{self.log()}")

    def _wait_started(self, timeout: float) -> None:
        started = ("service.started", "supervisor.worker_started")  # logged after the handlers are set
        deadline = time.monotonic() + timeout
        while (self.process.poll() is None and time.monotonic() < deadline
               and not any(e.get("event") in started for e in self.events)):
            time.sleep(0.05)

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == event]

    def log(self) -> str:
        return "\n".join(self.stderr_text[-40:])

    def _finish(self) -> None:
        self._reader.join(5)
        if self.process.stderr is not None:
            self.process.stderr.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self._finish()

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, as Kubernetes would; returns the exit code. Sent once the writer says it has started:
        earlier, Python's default handler would end it by the signal (exit -15), not by a clean stop."""
        if self.process.poll() is None:
            self._wait_started(timeout)
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self._finish()
        return code

    def wait_exit(self, timeout: float = 60.0) -> int:
        code = self.process.wait(timeout)
        self._finish()
        return code


def produce(bootstrap: str, topic: str, records: Iterable[tuple[int | None, bytes | None, bytes | None, Any]]) -> int:
    """(partition or None, key, value, headers) tuples; returns how many were delivered."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 10, "enable.idempotence": True})
    count = 0
    for partition, key, value, headers in records:
        kwargs: dict[str, Any] = {"key": key, "value": value, "headers": headers}
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                producer.produce(topic, **kwargs)
                break
            except BufferError:
                producer.poll(0.05)
        count += 1
    assert producer.flush(60) == 0
    return count


def json_n(n: int) -> bytes:
    return json.dumps({"n": n}).encode()


def feed_slowly(
    bootstrap: str, topic: str, records: int, batch: int, pause_s: float,
    value: Callable[[int], bytes] = json_n, key: Callable[[int], bytes | None] = lambda n: None, first: int = 0,
) -> threading.Thread:
    """Produce values for n = first..first+records-1, `batch` at a time with a pause between, on a started thread:
    input that keeps arriving while a test kills, stalls or compacts."""
    def run() -> None:
        end = first + records
        for start in range(first, end, batch):
            numbers = range(start, min(start + batch, end))
            produce(bootstrap, topic, ((None, key(n), value(n), None) for n in numbers))
            time.sleep(pause_s)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def log_end(bootstrap: str, topic: str, partitions: int) -> dict[tuple[str, int], int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "tests-watermarks"})
    try:
        return {
            (topic, p): consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
            for p in range(partitions)
        }
    finally:
        consumer.close()


def wait_committed(
    catalog: Catalog, table: str, group: str, expected: Mapping[tuple[str, int], int], timeout: float = 120.0,
    writer: Writer | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    committed: dict[tuple[str, int], int] = {}
    while time.monotonic() < deadline:
        if catalog.table_exists(table):
            committed = table_offsets(catalog.load_table(table), group)
            if all(committed.get(tp, 0) >= n for tp, n in expected.items()):  # an empty partition has n = 0
                return
        if writer is not None and writer.process.poll() is not None:
            raise AssertionError(f"writer exited ({writer.process.returncode}):\n{writer.log()}")
        time.sleep(0.3)
    raise AssertionError(f"table offsets {committed} never reached {dict(expected)}" +
                         (f"\n{writer.log()}" if writer else ""))


def audit_cli(config_path: Path, topic: str, table: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tabletopic", "audit", "--config", str(config_path), "--topic", topic, "--table", table],
        capture_output=True, text=True, timeout=300,
    )


def assert_exactly_once(iceberg: Catalog, config_path: Path, topic: str, table: str, records: int) -> None:
    """The table holds each of the records `{"n": 0..records-1}` once, and `tabletopic audit` agrees."""
    values = iceberg.load_table(table).scan(selected_fields=("n",)).to_arrow()["n"].to_pylist()
    assert len(values) == records
    assert sorted(values) == list(range(records))
    audit = audit_cli(config_path, topic, table)
    assert audit.returncode == 0, audit.stdout + audit.stderr


def audit_values_cli(config_path: Path, topic: str, table: str, *flags: str) -> subprocess.CompletedProcess[str]:
    """`tabletopic audit --values` (offsets, then each record's values against its row)."""
    return subprocess.run(
        [sys.executable, "-m", "tabletopic", "audit", "--config", str(config_path), "--topic", topic, "--table", table,
         "--values", *flags],
        capture_output=True, text=True, timeout=600,
    )


def assert_values_equal(audit: subprocess.CompletedProcess[str]) -> None:
    """`audit --values` passed, and compared records."""
    assert audit.returncode == 0, audit.stdout + audit.stderr
    [line] = [line for line in audit.stdout.splitlines() if line.startswith("values")]
    assert line.endswith("0 differ") and " 0 of " not in line, audit.stdout


def create_topic_with(bootstrap: str, topic: str, partitions: int, config: Mapping[str, str]) -> str:
    """A topic with topic-level settings (e.g. max.message.bytes)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, partitions, 1, config=dict(config))]).values():
        future.result(timeout=30)
    return topic


def produce_large(
    bootstrap: str, topic: str, records: Iterable[tuple[int | None, bytes | None, bytes | None, Any]], max_bytes: int
) -> int:
    """As `produce`, with a producer that takes records up to `max_bytes`."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 10, "enable.idempotence": True,
                         "message.max.bytes": max_bytes})
    count = 0
    for partition, key, value, headers in records:
        producer.produce(topic, key=key, value=value, headers=headers,
                         **({} if partition is None else {"partition": partition}))
        producer.poll(0)
        count += 1
    assert producer.flush(60) == 0
    return count
