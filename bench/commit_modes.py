"""Commit design under contention: N workers each committing their own partitions to one table.

Runs a local broker, feeds one table from 8 partitions at a steady rate, and runs
`tabletopic run --workers N` for a fixed time; reports commits per minute, conflicts (a commit
that lost the race and was judged again), attempts per commit, snapshots and records/s, for
1 worker (no contention: the same cadence as one committer per table) and for N workers.

    .venv/bin/python bench/commit_modes.py [--workers 4] [--seconds 60] [--rate 4000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from tabletopic.catalog.loader import open_catalog
from tabletopic.config import load_config
from tabletopic.local.kafka import LocalKafka
from tabletopic.local.topics import create_topic, produce

PARTITIONS = 8


def run(bootstrap: str, workers: int, seconds: float, rate: int, work: Path) -> dict[str, float]:
    topic = f"bench-{workers}"
    create_topic(bootstrap, topic, PARTITIONS)
    config_path = work / f"w{workers}.yaml"
    config_path.write_text(yaml.safe_dump({
        "kafka": {"bootstrap.servers": bootstrap}, "group_id": f"bench-{workers}", "workers": workers,
        "catalog": {"warehouse": str(work / "warehouse")}, "commit": {"interval_seconds": 2},
        "tables": [{"table": f"bench.w{workers}", "topic": topic}],
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
    process = subprocess.Popen([sys.executable, "-m", "tabletopic", "run", "--config", str(config_path)],
                               stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    events: list[dict[str, object]] = []
    reader = threading.Thread(target=lambda: events.extend(
        json.loads(line) for line in process.stderr or [] if line.startswith(b"{")))
    reader.start()
    time.sleep(seconds)
    stop.set()
    feeder.join()
    process.terminate()
    process.wait(60)
    reader.join()
    done = [e for e in events if e.get("event") == "commit.done"]
    table = open_catalog(load_config(config_path, environ={}).catalog).load_table(f"bench.w{workers}")
    return {
        "workers": workers,
        "commits_per_min": round(len(done) / (seconds / 60), 1),
        "conflicts": sum(1 for e in events if e.get("event") == "commit.conflict"),
        "attempts_per_commit": round(sum(int(str(e["attempts"])) for e in done) / max(1, len(done)), 2),
        "snapshots": len(table.snapshots()),
        "records_per_s": round(table.scan().count() / seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rate", type=int, default=4000, help="records per second fed to the table")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        kafka = LocalKafka(Path(work) / "kafka").start()
        try:
            for workers in (1, args.workers):
                print(json.dumps(run(kafka.bootstrap, workers, args.seconds, args.rate, Path(work))), flush=True)
        finally:
            kafka.stop()


if __name__ == "__main__":
    main()
