"""Commit design under contention: a commit per worker against one elected committer per table.

Runs a local broker, feeds one table from 8 partitions at a steady rate for a fixed time, and
reports commits per minute, conflicts (a commit that lost the race and was judged again),
attempts per commit, snapshots and records/s, for:
- `per-worker`, 1 worker: `tabletopic run --workers 1` (no contention);
- `per-worker`, N workers: `tabletopic run --workers N`, each worker commits its partitions;
- `elected`, N workers: the prototype in bench/elected_committer.py, N workers hand their
  files to one committer that appends once per interval.

    .venv/bin/python -m bench.commit_modes [--workers 4] [--seconds 60] [--rate 4000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import yaml

from bench.elected_committer import run_elected
from tabletopic.catalog.loader import open_catalog
from tabletopic.config import load_config
from tabletopic.local.kafka import LocalKafka
from tabletopic.local.topics import create_topic, produce

PARTITIONS = 8


def run(bootstrap: str, mode: str, workers: int, seconds: float, rate: int, work: Path) -> dict[str, object]:
    name = f"{mode.replace('-', '_')}_{workers}"
    topic = f"bench-{name}"
    create_topic(bootstrap, topic, PARTITIONS)
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
        print(f"elected: {stats.fenced} contributions dropped as already taken", file=sys.stderr)
    else:
        commits_per_min, conflicts, attempts, commits = per_worker(config_path, seconds, stop, feeder)
    table = open_catalog(load_config(config_path, environ={}).catalog).load_table(f"bench.{name}")
    return {
        "mode": mode,
        "workers": workers,
        "commits_per_min": round(commits_per_min, 1),
        "conflicts": conflicts,
        "attempts_per_commit": round(attempts / max(1, commits), 2),
        "snapshots": len(table.snapshots()),
        "records_per_s": round(table.scan().count() / seconds),
        "duplicates": _duplicates(table.scan(selected_fields=("n",)).to_arrow()["n"]),
    }


def per_worker(
    config_path: Path, seconds: float, stop: threading.Event, feeder: threading.Thread
) -> tuple[float, int, int, int]:
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
    done = [e for e in events if e.get("event") == "commit.done"]
    conflicts = sum(1 for e in events if e.get("event") == "commit.conflict")
    attempts = sum(int(str(e["attempts"])) for e in done)
    return len(done) / (seconds / 60), conflicts, attempts, len(done)


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
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rate", type=int, default=4000, help="records per second fed to the table")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        kafka = LocalKafka(Path(work) / "kafka").start()
        try:
            for mode, workers in (("per-worker", 1), ("per-worker", args.workers), ("elected", args.workers)):
                result = run(kafka.bootstrap, mode, workers, args.seconds, args.rate, Path(work))
                print(json.dumps(result), flush=True)
        finally:
            kafka.stop()


if __name__ == "__main__":
    main()
