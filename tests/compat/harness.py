"""The scenarios every catalog and object store of the compatibility matrix runs (docs/compatibility.md).

A `LakeUnderTest` is a catalog (tabletopic's `catalog:` section) with the warehouse it writes to, and a way
to take it away for a while. Each scenario writes a fresh table from a fresh topic through it, proves the
table holds every record once (and `tabletopic audit` agrees), and returns the table's name so an engines
test can read the same table through the same catalog.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import (
    Writer,
    assert_exactly_once,
    assert_values_equal,
    audit_values_cli,
    catalog_of,
    feed_slowly,
    log_end,
    produce,
    wait_committed,
    writer_config,
)

PARTITIONS = 4
ROUND_TRIP_RECORDS = 5_000
CHAOS_RECORDS = 40_000
RACE_RECORDS = 20_000
OUTAGE_RECORDS = 30_000
GROUP = "tests"
GAVE_UP = "no longer an ancestor"
OUTAGE_EVENTS = ("table.commit_failed", "commit.unavailable", "table.retrying", "commit.state_unknown",
                 "table.source_unavailable")


@dataclass(frozen=True)
class LakeUnderTest:
    name: str  # short, lower-case letters and digits: it prefixes the namespaces the scenarios write
    catalog: dict[str, str]  # tabletopic's `catalog:` section: pyiceberg's properties
    pause: Callable[[], AbstractContextManager[None]]  # inside it, the catalog (or the store) is unreachable


@contextlib.contextmanager
def stopped(*pids: int) -> Iterator[None]:
    """SIGSTOP these processes while inside, SIGCONT on the way out: a service that stops answering."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def fresh_table(lake: LakeUnderTest) -> str:
    return f"{lake.name}_{uuid.uuid4().hex[:8]}.events"


def _config(lake: LakeUnderTest, path: Path, bootstrap: str, topic: str, table: str, **overrides: Any) -> Path:
    return writer_config(path, bootstrap, topic, table, "", catalog=dict(lake.catalog), **overrides)


def _padded(n: int) -> bytes:
    return json.dumps({"n": n, "pad": "p" * 60}).encode()


def round_trip(lake: LakeUnderTest, kafka: Any, new_topic: Callable[..., str],
               spawn_writer: Callable[..., Writer], tmp_path: Path) -> str:
    """A JSON topic into a new table: every record once, the audit clean, a second run adds to it."""
    topic, table = new_topic(PARTITIONS), fresh_table(lake)
    config = _config(lake, tmp_path / "round_trip.yaml", kafka.bootstrap, topic, table)
    half = ROUND_TRIP_RECORDS // 2
    iceberg = catalog_of(config)
    for start in (0, half):
        produce(kafka.bootstrap, topic, ((None, None, _padded(n), None) for n in range(start, start + half)))
        writer = spawn_writer(config)
        wait_committed(iceberg, table, GROUP, log_end(kafka.bootstrap, topic, PARTITIONS), writer=writer)
        assert writer.stop() == 0, writer.log()
    assert_exactly_once(iceberg, config, topic, table, 2 * half)
    return table


def kill_9_chaos(lake: LakeUnderTest, kafka: Any, new_topic: Callable[..., str],
                 spawn_writer: Callable[..., Writer], tmp_path: Path, compactions_may_give_up: bool = False) -> str:
    """Two workers, `tabletopic compact` beside them, kill -9 of a worker and of the whole pool while records
    arrive; then each record once, each row its own record's values. `compactions_may_give_up`: a catalog
    that serves no history cannot show a compaction that the writers' commits overtook its base; it gives up
    (and says why) instead of landing."""
    topic, table = new_topic(PARTITIONS), fresh_table(lake)
    config = _config(lake, tmp_path / "chaos.yaml", kafka.bootstrap, topic, table, workers=2,
                     commit={"interval_seconds": 0.5}, consumer={"batch_size": 2000})
    done = threading.Event()
    compactions: list[subprocess.CompletedProcess[str]] = []

    def compact_repeatedly() -> None:
        while not done.is_set():
            compactions.append(subprocess.run(
                [sys.executable, "-m", "tabletopic", "compact", "--config", str(config), "--table", table],
                capture_output=True, text=True, timeout=300))
            done.wait(1.0)

    producer = feed_slowly(kafka.bootstrap, topic, CHAOS_RECORDS, 2000, 0.8, value=_padded)
    writer = spawn_writer(config)
    writer.wait_for("commit.done", timeout=180)
    compactor = threading.Thread(target=compact_repeatedly)
    compactor.start()
    try:
        for life in range(4):
            time.sleep(3)
            if life % 2 == 0:
                _kill_a_worker(writer)
            else:
                writer.wait_for("commit.started", timeout=120)
                writer.kill()  # the whole pool, maybe mid-commit
                writer = spawn_writer(config)
        producer.join()
        iceberg = catalog_of(config)
        wait_committed(iceberg, table, GROUP, log_end(kafka.bootstrap, topic, PARTITIONS), timeout=300,
                       writer=writer)
    finally:
        done.set()
        compactor.join()
    assert writer.stop() == 0, writer.log()
    failed = [c.stderr[-2000:] for c in compactions if c.returncode != 0]
    if compactions_may_give_up:
        failed = [text for text in failed if GAVE_UP not in text]
    assert not failed, failed
    assert_exactly_once(iceberg, config, topic, table, CHAOS_RECORDS)
    assert_values_equal(audit_values_cli(config, topic, table))
    return table


def _kill_a_worker(writer: Writer, timeout_s: float = 120) -> None:
    """kill -9 one worker of the pool, once the supervisor has one (it restarts a killed one)."""
    pid = writer.process.pid
    deadline = time.monotonic() + timeout_s
    while True:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        workers = [int(child) for child in children if _is_python(int(child))]
        if workers:
            break
        assert time.monotonic() < deadline, f"the pool has had no worker for {timeout_s} s:\n{writer.log()}"
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(workers[0], signal.SIGKILL)


def _is_python(pid: int) -> bool:
    try:
        return "python" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except FileNotFoundError:
        return False


def writers_race(lake: LakeUnderTest, kafka: Any, new_topic: Callable[..., str],
                 spawn_writer: Callable[..., Writer], tmp_path: Path) -> str:
    """Two writer processes share one table (each its own partitions) and commit every 0.3 s: the catalog's
    compare-and-swap refuses the stale commit, the loser retries, no commit is lost or applied twice."""
    topic, table = new_topic(PARTITIONS), fresh_table(lake)
    config = _config(lake, tmp_path / "race.yaml", kafka.bootstrap, topic, table,
                     commit={"interval_seconds": 0.3}, consumer={"batch_size": 500})
    producer = feed_slowly(kafka.bootstrap, topic, RACE_RECORDS, 1000, 0.5, value=_padded)
    first = spawn_writer(config)
    first.wait_for("commit.done", timeout=180)
    second = spawn_writer(config)
    producer.join()
    iceberg = catalog_of(config)
    wait_committed(iceberg, table, GROUP, log_end(kafka.bootstrap, topic, PARTITIONS), timeout=300, writer=second)
    assert first.stop() == 0, first.log()
    assert second.stop() == 0, second.log()
    committed_by = [w for w in (first, second) if w.named("commit.done")]
    assert len(committed_by) == 2, "both writers should have committed to the table"
    conflicts = len(first.named("commit.conflict")) + len(second.named("commit.conflict"))
    print(f"{lake.name}: {conflicts} commit conflicts retried by two racing writers")
    assert_exactly_once(iceberg, config, topic, table, RACE_RECORDS)
    return table


def outage(lake: LakeUnderTest, kafka: Any, new_topic: Callable[..., str],
           spawn_writer: Callable[..., Writer], tmp_path: Path, seconds: float = 20) -> str:
    """The lake is away for `seconds` while records arrive: the writer stays up, says so, and catches up
    by itself with every record once."""
    topic, table = new_topic(PARTITIONS), fresh_table(lake)
    config = _config(lake, tmp_path / "outage.yaml", kafka.bootstrap, topic, table,
                     commit={"interval_seconds": 1, "retry_deadline_seconds": 8})
    producer = feed_slowly(kafka.bootstrap, topic, OUTAGE_RECORDS, 1000, 1.0, value=_padded)
    writer = spawn_writer(config)
    writer.wait_for("commit.done", timeout=180)
    with lake.pause():
        time.sleep(seconds)
        assert writer.process.poll() is None, writer.log()
    producer.join()
    iceberg = catalog_of(config)
    wait_committed(iceberg, table, GROUP, log_end(kafka.bootstrap, topic, PARTITIONS), timeout=300, writer=writer)
    assert writer.stop() == 0, writer.log()
    # A client with a timeout says so; one that waits on its connection says nothing and carries on after.
    said = [e["event"] for e in writer.events if e.get("event") in OUTAGE_EVENTS]
    print(f"{lake.name}: the writer said during the outage: {said or 'nothing (its calls waited)'}")
    assert_exactly_once(iceberg, config, topic, table, OUTAGE_RECORDS)
    return table
