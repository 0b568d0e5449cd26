"""Every metric tabletopic exposes (prefix `tabletopic_`), and the calls that update them.

Gauges say how they merge across the worker processes of one run (prometheus_client's
multiprocess modes): a partition's lag is whatever its latest owner wrote; buffers add up;
a table is as fresh as its freshest worker.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from tabletopic.commit.offsets import TopicPartition

consumer_lag = Gauge("tabletopic_consumer_lag_records",
                     "Records in the log past the table's committed offset", ["table", "topic", "partition"],
                     multiprocess_mode="livemostrecent")
committed_offset = Gauge("tabletopic_committed_offset", "The table's next offset for the partition",
                         ["table", "topic", "partition"], multiprocess_mode="livemostrecent")
records_consumed = Counter("tabletopic_records_consumed", "Records read from Kafka", ["table"])
bytes_consumed = Counter("tabletopic_bytes_consumed", "Value bytes read from Kafka", ["table"])
equality_delete_files = Counter("tabletopic_equality_delete_files", "Equality-delete files committed (upsert)",
                                ["table"])
records_committed = Counter("tabletopic_records_committed", "Rows committed to the table", ["table"])
bytes_committed = Counter("tabletopic_bytes_committed", "Data file bytes committed to the table", ["table"])
commits = Counter("tabletopic_commits", "Commit rounds by outcome (committed, nothing, failed)", ["table", "outcome"])
commit_duration = Histogram("tabletopic_commit_duration_seconds", "Time from the start of a commit to its snapshot",
                            ["table"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
commit_conflicts = Counter("tabletopic_commit_conflicts", "Commits that met another writer's snapshot", ["table"])
commit_retries = Counter("tabletopic_commit_retries", "Commit attempts after the first", ["table"])
commit_files = Histogram("tabletopic_commit_files", "Data files per commit", ["table"],
                         buckets=(0, 1, 2, 4, 8, 16, 32, 64, 128))
commit_bytes = Histogram("tabletopic_commit_bytes", "Data file bytes per commit", ["table"],
                         buckets=(2**20, 4 * 2**20, 16 * 2**20, 64 * 2**20, 128 * 2**20, 256 * 2**20, 512 * 2**20,
                                  2**30))
buffer_bytes = Gauge("tabletopic_buffer_bytes", "Bytes buffered for the table, not yet committed", ["table"],
                     multiprocess_mode="livesum")
freshness = Gauge("tabletopic_freshness_seconds", "Age of the newest committed record (its Kafka timestamp)",
                  ["table"], multiprocess_mode="livemin")
dead_letters = Counter("tabletopic_dead_letters", "Records sent to the dead-letter path", ["table", "reason"])
dead_letter_topic_failures = Counter(
    "tabletopic_dead_letter_topic_failures",
    "Dead-letter copies not sent whole to the dead-letter topic (truncated, refused, undelivered)", ["table", "reason"])
compaction_runs = Counter("tabletopic_compaction_runs", "Compactions run by the maintenance process", ["table"])
files_rewritten = Counter("tabletopic_compaction_files_rewritten", "Data files replaced by compaction", ["table"])
rebalances = Counter("tabletopic_rebalances", "Partition assignment changes", ["kind"])
# 1 while a fault no retry fixes (refused credentials, a missing bucket) halts the table; /readyz names it.
table_halted = Gauge("tabletopic_table_halted", "1 while the table is halted by a fault no retry fixes (reason: "
                     "its code)", ["table", "reason"], multiprocess_mode="livemax")
# For /healthz and /readyz in the process that serves HTTP: one sample per live worker.
heartbeat = Gauge("tabletopic_worker_heartbeat_timestamp_seconds", "When the worker's loop last turned",
                  ["worker"], multiprocess_mode="liveall")
joined = Gauge("tabletopic_worker_joined", "1 once the worker has had its first assignment (maybe empty)",
               ["worker"], multiprocess_mode="liveall")


def record_consumed(table: str, records: int, nbytes: int) -> None:
    records_consumed.labels(table).inc(records)
    bytes_consumed.labels(table).inc(nbytes)


def record_commit(table: str, rows: int, files: int, nbytes: int, attempts: int, conflicts: int,
                  seconds: float, delete_files: int = 0) -> None:
    commits.labels(table, "committed" if files or rows or delete_files else "nothing").inc()
    equality_delete_files.labels(table).inc(delete_files)
    records_committed.labels(table).inc(rows)
    bytes_committed.labels(table).inc(nbytes)
    commit_duration.labels(table).observe(seconds)
    commit_files.labels(table).observe(files)
    commit_bytes.labels(table).observe(nbytes)
    commit_retries.labels(table).inc(max(attempts - 1, 0))
    commit_conflicts.labels(table).inc(conflicts)


def record_commit_failed(table: str) -> None:
    commits.labels(table, "failed").inc()


def record_dead_letters(table: str, reasons: Iterable[str]) -> None:
    for reason, count in Tally(reasons).items():
        dead_letters.labels(table, reason).inc(count)


def record_dead_letter_topic_failure(table: str, reason: str, count: int = 1) -> None:
    dead_letter_topic_failures.labels(table, reason).inc(count)


def record_compaction(table: str, files_removed: int) -> None:
    compaction_runs.labels(table).inc()
    files_rewritten.labels(table).inc(files_removed)


def record_partition(table: str, tp: TopicPartition, committed: int | None, lag: int) -> None:
    """`committed` None: the table holds nothing of the partition yet (no offset to show)."""
    topic, partition = tp[0], str(tp[1])
    if committed is not None:
        committed_offset.labels(table, topic, partition).set(committed)
    consumer_lag.labels(table, topic, partition).set(lag)


def record_table_state(table: str, buffered: int, newest_record_ms: int | None, now_s: float | None = None) -> None:
    buffer_bytes.labels(table).set(buffered)
    if newest_record_ms is not None:
        now_s = time.time() if now_s is None else now_s
        freshness.labels(table).set(max(now_s - newest_record_ms / 1000, 0.0))


def beat(worker: str) -> None:
    heartbeat.labels(worker).set(time.time())


def mark_joined(worker: str) -> None:
    joined.labels(worker).set(1)


def mark_starting(worker: str) -> None:
    joined.labels(worker).set(0)
    beat(worker)


# This process's halted tables and their reasons, so that a table going on clears its own sample.
_halted: dict[str, str] = {}


def record_table_halted(table: str, reason: str) -> None:
    previous = _halted.get(table)
    if previous is not None and previous != reason:
        table_halted.labels(table, previous).set(0)
    _halted[table] = reason
    table_halted.labels(table, reason).set(1)


def record_table_going(table: str) -> bool:
    """The table commits: no longer halted. Whether it was."""
    reason = _halted.pop(table, None)
    if reason is None:
        return False
    table_halted.labels(table, reason).set(0)
    return True


def halted_tables(families: Iterable[Any]) -> dict[str, str]:
    """Table -> reason of every halted table in collected metric families (a registry's `collect()`)."""
    return {labels["table"]: labels["reason"] for labels in _set_samples(families, table_halted._name)}


probe_failing = Gauge("tabletopic_probe_failing", "1 while the pool's probing worker finds the service failing "
                      "(probe: catalog or broker; verdict: what /readyz says)", ["probe", "verdict"],
                      multiprocess_mode="livemax")
probe_checked_at = Gauge("tabletopic_probe_checked_at_seconds", "When the pool's probing worker last gave a verdict "
                         "on the service (unix time)", ["probe"], multiprocess_mode="livemax")
# This process's failing verdict per probe, so that a new verdict clears the previous one's sample.
_verdicts: dict[str, str] = {}
# A published verdict older than this is no verdict: the probing worker is stalled (a round of probes takes at
# most two probe timeouts and a period, 15 s).
STALE_VERDICT_S = 45.0


def record_probe(probe: str, verdict: str | None, now: float | None = None) -> None:
    """A pool worker's latest verdict on a service (None: it answers), for the supervisor's /readyz."""
    previous = _verdicts.pop(probe, None)
    if previous is not None and previous != verdict:
        probe_failing.labels(probe, previous).set(0)
    if verdict is not None:
        _verdicts[probe] = verdict
        probe_failing.labels(probe, verdict).set(1)
    probe_checked_at.labels(probe).set(time.time() if now is None else now)


def probe_verdict(families: Iterable[Any], probe: str, now: float | None = None) -> str | None:
    """The published verdict on `probe` in collected metric families: None when it answers. No verdict, or
    a stale one, is a failing verdict that says so (the probing worker is down, starting or stalled)."""
    collected = list(families)
    checked = [sample.value for family in collected if family.name == probe_checked_at._name
               for sample in family.samples if sample.labels.get("probe") == probe]
    if not checked or max(checked) <= 0:
        return "no verdict yet (the pool's probing worker, worker 0, is starting or restarting)"
    age = (time.time() if now is None else now) - max(checked)
    if age > STALE_VERDICT_S:
        return f"no verdict for {age:.0f} s (the pool's probing worker, worker 0, is stalled)"
    return next((labels["verdict"] for labels in _set_samples(collected, probe_failing._name)
                 if labels["probe"] == probe), None)


def _set_samples(families: Iterable[Any], name: str) -> Iterator[dict[str, str]]:
    for family in families:
        if family.name == name:
            for sample in family.samples:
                if sample.value >= 1:
                    yield sample.labels


rebuild_behind = Gauge("tabletopic_rebuild_behind_records",
                       "Offsets the rebuild still has to read to reach what the live table holds", ["table"],
                       multiprocess_mode="livemostrecent")
rebuild_eta = Gauge("tabletopic_rebuild_eta_seconds", "Estimated time for the rebuild to catch up (-1: not closing)",
                    ["table"], multiprocess_mode="livemostrecent")
rebuild_records = Counter("tabletopic_rebuild_records", "Records the rebuild has read", ["table"])


def record_rebuild(table: str, behind: int, eta_s: float | None, read: int) -> None:
    rebuild_behind.labels(table).set(behind)
    rebuild_eta.labels(table).set(-1 if eta_s is None else eta_s)
    if read:
        rebuild_records.labels(table).inc(read)
