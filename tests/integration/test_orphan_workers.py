"""kill -9 of a pool's supervisor: every worker it started is gone soon after, whatever it was doing.

Workers are found by the supervisor's pid in their environment (TABLETOPIC_SUPERVISOR_PID), not by the
supervisor's list of children: that list dies with it, and a worker forked a moment before the kill counts too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tabletopic.local.kafka import LocalKafka
from tabletopic.supervisor import SUPERVISOR_PID_ENV
from tests.support import Writer, feed_slowly, writer_config

PARTITIONS = 4
SHUTDOWN_S = 4.0
# Beyond the bound: an interpreter's start (imports) and its exit; far less than "never".
MARGIN_S = 20.0


def workers_of(supervisor: int) -> list[int]:
    """Live processes started by `supervisor` (by the pid it put in their environment)."""
    mark = f"{SUPERVISOR_PID_ENV}={supervisor}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if mark in (entry / "environ").read_bytes().split(b"\0") and alive(int(entry.name)):
                    found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie has exited; only its parent's wait is missing


def kill_supervisor_and_wait(pool: Writer, kill: Callable[[], None] | None = None) -> None:
    """kill -9 the pool's supervisor (or `kill` it so), then wait for its workers to be gone."""
    supervisor = pool.process.pid
    workers = workers_of(supervisor)
    if kill is None:
        os.kill(supervisor, signal.SIGKILL)
        pool.process.wait()
    else:
        kill()
    workers = sorted({*workers, *workers_of(supervisor)})  # one forked a moment before the kill too
    wait_s = SHUTDOWN_S + MARGIN_S
    deadline = time.monotonic() + wait_s
    while workers and time.monotonic() < deadline:
        time.sleep(0.2)
        workers = [pid for pid in workers if alive(pid)]
    for pid in workers:  # not to leave them to the next test
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not workers, f"workers {workers} outlived their supervisor by {wait_s} s:\n{pool.log()}"


def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.01)


@pytest.fixture
def pool_config(kafka: LocalKafka, new_topic: Callable[..., str], tmp_path: Path) -> Path:
    topic = new_topic(PARTITIONS)
    return writer_config(tmp_path / "pool.yaml", kafka.bootstrap, topic, "orphans.events", tmp_path / "wh",
                         workers=2, shutdown_timeout_seconds=SHUTDOWN_S, commit={"interval_seconds": 0.5})


def test_workers_killed_with_supervisor_right_after_their_start_exit(
    pool_config: Path, spawn_writer: Callable[..., Writer],
) -> None:
    """The supervisor dies while its workers are still importing: no handler, no parent-death signal yet."""
    pool = spawn_writer(pool_config)
    wait_until(lambda: len(workers_of(pool.process.pid)) == 2)
    kill_supervisor_and_wait(pool)


def test_workers_killed_with_supervisor_mid_commit_exit(
    kafka: LocalKafka, pool_config: Path, spawn_writer: Callable[..., Writer],
) -> None:
    """As kill_9_chaos does: the supervisor dies as a commit starts, while records arrive."""
    topic = yaml.safe_load(pool_config.read_text())["tables"][0]["topic"]
    feeder = feed_slowly(kafka.bootstrap, topic, 3000, 500, 0.3)
    try:
        pool = spawn_writer(pool_config)
        pool.wait_for("commit.started", timeout=120)
        kill_supervisor_and_wait(pool)
    finally:
        feeder.join()


def test_worker_stuck_in_a_commit_retry_exits_after_the_bound(
    kafka: LocalKafka, pool_config: Path, spawn_writer: Callable[..., Writer], tmp_path: Path,
) -> None:
    """A commit that keeps failing (the catalog's database locked by another process) retries for minutes;
    the supervisor dies meanwhile and its pipe is closed, as kill_9_chaos's `writer.kill()` does: the workers
    still exit at the shutdown bound (nothing they log may hold them, nor the flush they are inside)."""
    settings = yaml.safe_load(pool_config.read_text())
    settings["commit"]["retry_deadline_seconds"] = 600
    pool_config.write_text(yaml.safe_dump(settings))
    feeder = feed_slowly(kafka.bootstrap, settings["tables"][0]["topic"], 4000, 200, 0.2)
    lock: sqlite3.Connection | None = None
    try:
        pool = spawn_writer(pool_config)
        pool.wait_for("commit.done", timeout=120)
        lock = sqlite3.connect(tmp_path / "wh" / "catalog.db", timeout=60, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")  # every catalog read and commit now waits, then retries
        pool.wait_for("commit.unavailable", timeout=60)
        kill_supervisor_and_wait(pool, kill=pool.kill)  # kill -9, then the reader of its stderr goes away
    finally:
        if lock is not None:
            lock.close()
        feeder.join()
