"""Commit design under contention: a commit per worker against one elected committer per table.

Runs a local broker, feeds one table from 8 partitions at a steady rate for a fixed time, and
reports commits per minute, conflicts (a commit that lost the race and was judged again),
attempts per commit, snapshots and records/s, for:
- `per-worker`, 1 worker: `tabletopic run --workers 1` (no contention);
- `per-worker`, N workers: `tabletopic run --workers N`, each worker commits its partitions;
- `elected`, N workers: the prototype in bench/elected_committer.py, N workers hand their
  files to one committer that appends once per interval.

`--workers 4,8,16` runs the last two for each count (issue 22: conflicts as writers are added); the
topic has max(8, N) partitions so every worker holds one. Per-worker rows also give commits/min
over the steady span (first to last commit, start-up left out), conflicts per commit and the commit
latency p50/p99: from a commit's first `commit.started` (its Parquet file already written) to its
`commit.done`, retries included, joined through the snapshot's commit id.

    .venv/bin/python -m bench.commit_modes [--workers 4[,8,16]] [--seconds 60] [--rate 4000]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import yaml

from bench.elected_committer import run_elected
from tabletopic.catalog.loader import open_catalog
from tabletopic.commit.offsets import COMMIT_ID_KEY
from tabletopic.config import load_config
from tabletopic.local.kafka import LocalKafka
from tabletopic.local.topics import create_topic, produce

PARTITIONS = 8


def partitions_for(workers: int) -> int:
    return max(PARTITIONS, workers)


def run(bootstrap: str, mode: str, workers: int, seconds: float, rate: int, work: Path) -> dict[str, object]:
    name = f"{mode.replace('-', '_')}_{workers}"
    topic = f"bench-{name}"
    partitions = partitions_for(workers)
    create_topic(bootstrap, topic, partitions)
    config_path = work / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump({
        "kafka": {"bootstrap.servers": bootstrap}, "group_id": name, "workers": workers,
        "catalog": {"warehouse": str(work / "warehouse")}, "commit": {"interval_seconds": 2},
        "tables": [{"table": f"bench.{name}", "topic": topic}],
    }))
    stop = threading.Event()

    def feed() -> None:
        n = 0
        while not stop.is_set():
            started = time.monotonic()
            produce(bootstrap, topic, iter([(None, json.dumps({"n": i, "pad": "x" * 200}).encode())
                                           for i in range(n, n + rate)]))
            n += rate
            time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))

    feeder = threading.Thread(target=feed)
    feeder.start()
    threading.Timer(seconds, stop.set).start()  # both modes are fed for exactly `seconds`
    if mode == "elected":
        try:
            stats = run_elected(config_path, workers, seconds)
        finally:
            stop.set()
            feeder.join()
        commits_per_min, conflicts, attempts = stats.commits / (seconds / 60), stats.conflicts, stats.attempts
        commits = stats.commits
        events: list[dict[str, object]] = []
        print(f"elected: {stats.fenced} contributions dropped as already taken", file=sys.stderr)
    else:
        events = per_worker(config_path, seconds, stop, feeder)
        commits_per_min, conflicts, attempts, commits = _counts(events, seconds)
    table = open_catalog(load_config(config_path, environ={}).catalog).load_table(f"bench.{name}")
    result: dict[str, object] = {
        "mode": mode,
        "workers": workers,
        "commits_per_min": round(commits_per_min, 1),
        "conflicts": conflicts,
        "attempts_per_commit": round(attempts / max(1, commits), 2),
        "snapshots": len(table.snapshots()),
        "records_per_s": round(table.scan().count() / seconds),
        "duplicates": _duplicates(table.scan(selected_fields=("n",)).to_arrow()["n"]),
    }
    if mode == "per-worker":
        commit_ids = {s.snapshot_id: str(s.summary[COMMIT_ID_KEY]) for s in table.snapshots()
                      if s.summary is not None and s.summary.get(COMMIT_ID_KEY)}
        latencies = commit_latencies(events, commit_ids)
        result.update({
            "partitions": partitions,
            "commits_per_min_steady": round(steady_rate_per_min(events), 1),
            "conflicts_per_commit": round(conflicts / max(1, commits), 2),
            "latency_p50_ms": round(1000 * percentile(latencies, 0.50)) if latencies else None,
            "latency_p99_ms": round(1000 * percentile(latencies, 0.99)) if latencies else None,
            "latency_max_ms": round(1000 * max(latencies)) if latencies else None,
            "latencies_timed": len(latencies),
        })
    return result


def per_worker(
    config_path: Path, seconds: float, stop: threading.Event, feeder: threading.Thread
) -> list[dict[str, object]]:
    """The log events of a `tabletopic run` fed for `seconds`, then stopped with SIGTERM."""
    process = subprocess.Popen([sys.executable, "-m", "tabletopic", "run", "--config", str(config_path)],
                               stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    events: list[dict[str, object]] = []
    reader = threading.Thread(target=lambda: events.extend(_json_lines(process.stderr or [])))
    reader.start()
    time.sleep(seconds)
    stop.set()
    feeder.join()
    process.terminate()
    process.wait(60)
    reader.join()
    return events


def _counts(events: Sequence[Mapping[str, object]], seconds: float) -> tuple[float, int, int, int]:
    done = [e for e in events if e.get("event") == "commit.done"]
    conflicts = sum(1 for e in events if e.get("event") == "commit.conflict")
    attempts = sum(int(str(e["attempts"])) for e in done)
    return len(done) / (seconds / 60), conflicts, attempts, len(done)


def _at(event: Mapping[str, object]) -> float:
    return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()


def steady_rate_per_min(events: Sequence[Mapping[str, object]]) -> float:
    """Commits per minute between the first and the last commit: the workers' start-up left out."""
    times = sorted(_at(e) for e in events if e.get("event") == "commit.done")
    if len(times) < 2 or times[-1] <= times[0]:
        return 0.0
    return (len(times) - 1) / ((times[-1] - times[0]) / 60)


def commit_latencies(events: Sequence[Mapping[str, object]], commit_ids: Mapping[int, str]) -> list[float]:
    """Seconds from each commit's first `commit.started` to its `commit.done`, retries included.

    `commit.done` names the snapshot, `commit.started` the commit id; the snapshot's summary joins them
    (`commit_ids`: snapshot id -> commit id). Commits whose lines were lost (interleaved) are left out."""
    first_start: dict[str, float] = {}
    for event in events:
        if event.get("event") == "commit.started" and "timestamp" in event:
            commit_id = str(event["commit_id"])
            first_start[commit_id] = min(first_start.get(commit_id, float("inf")), _at(event))
    latencies = []
    for event in events:
        if event.get("event") != "commit.done" or "timestamp" not in event:
            continue
        landed = commit_ids.get(int(str(event["snapshot_id"])))
        if landed is not None and landed in first_start:
            latencies.append(_at(event) - first_start[landed])
    return latencies


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile (q in 0..1) of a non-empty sequence."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _duplicates(values: pa.ChunkedArray) -> int:
    return len(values) - len(pc.unique(values))


def _json_lines(lines: Iterable[bytes]) -> Iterator[dict[str, object]]:
    """Log events of all workers; a line two workers interleaved (rare, long lines) is skipped."""
    for line in lines:
        try:
            yield json.loads(line)
        except ValueError:
            continue


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", default="4",
                        help="worker counts, comma-separated (e.g. 4,8,16): per-worker and elected for each")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rate", type=int, default=4000, help="records per second fed to the table")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        kafka = LocalKafka(Path(work) / "kafka").start()
        try:
            counts = [int(n) for n in str(args.workers).split(",")]
            cases = [("per-worker", 1)] + [(mode, n) for n in counts for mode in ("per-worker", "elected")]
            for mode, workers in cases:
                result = run(kafka.bootstrap, mode, workers, args.seconds, args.rate, Path(work))
                print(json.dumps(result), flush=True)
        finally:
            kafka.stop()


if __name__ == "__main__":
    main()
