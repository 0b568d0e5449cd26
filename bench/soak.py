"""Soak: many small commits from several writers with maintenance running beside them; commit
latency must stay flat as the table's history grows (issue 14: p99 of the last window of commits
at most 1.5 times the p99 of the first).

W writer processes each own one Kafka partition and call `Committer.commit` directly (the whole
commit path: reload, offsets check, Parquet file, append, retries on conflicts with the others),
`--rows` rows per commit, one commit every `--interval` seconds each (a writer's commit interval,
shortened): no broker, so the catalog is the only thing measured. Before they start, one commit
under another offsets key stands for a backfill that finished long ago (before issue 14 it pinned
every later snapshot against expiry). A maintenance process runs the project's maintenance
functions the way the built-in scheduler does: compaction when small files pile up, manifest
merging, expiry and orphan cleanup on their intervals, with ages scaled from hours to seconds, in the
scheduler's two loops (compaction; expiry and orphans) on two threads, calling its own passes.
At the end the table is checked: every row once, the offsets as written.

    .venv/bin/python -m bench.soak --commits 20000 --writers 4 [--interval 0.5] [--work DIR] [--out FILE]

Prints one JSON object: latency percentiles of the first and last `--window` commits (by the
time they finished), their p99 ratio, conflicts, compactions (attempts each, abandoned), expiries,
and the table's snapshot count over time.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

TABLE = "soak.events"
TOPIC = "soak"
GROUP = "soak"
TARGET_BYTES = 64 << 20


def _catalog(work: Path) -> Any:
    from pyiceberg.catalog.sql import SqlCatalog

    return SqlCatalog("soak", uri=f"sqlite:///{work}/catalog.db", warehouse=f"file://{work}/warehouse")


def _rows(partition: int, first: int, count: int) -> pa.Table:
    now = pa.scalar(int(time.time() * 1_000_000), pa.timestamp("us", tz="UTC"))
    return pa.table({
        "n": pa.array(range(first, first + count), pa.int64()),
        "payload": pa.array([f"event-{partition}-{o}" for o in range(first, first + count)]),
        "_kafka_partition": pa.array([partition] * count, pa.int32()),
        "_kafka_offset": pa.array(range(first, first + count), pa.int64()),
        "_kafka_timestamp": pa.array([now] * count, pa.timestamp("us", tz="UTC")),
    })


def _buffer(partition: int, first: int, count: int) -> Any:
    from tabletopic.commit.buffer import PartitionBuffer

    rows = _rows(partition, first, count)
    return PartitionBuffer(first, first + count - 1, [rows], rows.nbytes)


def _quiet() -> None:
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def prepare(work: Path) -> None:
    from tabletopic.catalog.tables import create_table
    from tabletopic.commit.committer import Committer

    catalog = _catalog(work)
    create_table(catalog, TABLE, _rows(0, 0, 1).schema, [], {})
    # A backfill under its own offsets key, finished before the live writers began.
    Committer(catalog, TABLE, f"{GROUP}.backfill", "backfill").commit({(TOPIC, 99): _buffer(99, 0, 100)})


def writer(index: int, work: Path, commits: int, rows: int, interval_s: float, go: Any, out: Path) -> None:
    from tabletopic.commit.committer import Committer

    _quiet()
    committer = Committer(_catalog(work), TABLE, GROUP, f"soak-{index}")
    go.wait()
    records = []
    for c in range(commits):
        started = time.perf_counter()
        outcome = committer.commit({(TOPIC, index): _buffer(index, c * rows, rows)})
        ended = time.perf_counter()
        assert outcome.committed == {(TOPIC, index): (c + 1) * rows}, outcome
        records.append((time.time(), ended - started, outcome.attempts, outcome.conflicts))
        time.sleep(max(0.0, interval_s - (ended - started)))
    out.write_text(json.dumps(records))


def maintenance(work: Path, settings: dict[str, float], stop: Any, out: Path) -> None:
    """The built-in scheduler's two loops (compaction.scheduler.maintain_forever) on one table, ages in seconds."""
    import threading

    from tabletopic.compaction.scheduler import MaintainedTable, TableState, cleanup_pass, compaction_pass
    from tabletopic.config import MaintenanceConfig

    _quiet()
    config = MaintenanceConfig(
        check_interval_seconds=settings["check_interval_s"], target_file_size_bytes=TARGET_BYTES,
        min_small_files=int(settings["min_small_files"]), max_manifests=int(settings["max_manifests"]),
        expire_interval_seconds=settings["expire_interval_s"],
        expire_older_than_hours=settings["expire_older_than_s"] / 3600, keep_snapshots=int(settings["keep_snapshots"]),
        orphans_interval_seconds=settings["orphans_interval_s"],
        orphans_older_than_hours=settings["orphans_older_than_s"] / 3600)
    table = MaintainedTable(TABLE, TARGET_BYTES)
    runs: list[dict[str, Any]] = []

    def loop(name: str, run_pass: Any) -> None:
        catalog = _catalog(work)
        state = TableState(time.monotonic(), time.monotonic())
        while not stop.is_set():
            now = time.monotonic()
            run: dict[str, Any] = {"loop": name, "at": time.time()}
            try:
                run.update(run_pass(catalog, table, state, config, now))
            except Exception as exc:  # the scheduler logs a failed run and goes on; so do we, and count it
                run["error"] = f"{type(exc).__name__}: {exc}"
            run["snapshots"] = len(catalog.load_table(TABLE).metadata.snapshots)
            run["seconds"] = time.monotonic() - now
            runs.append(run)
            stop.wait(settings["check_interval_s"])

    cleanup = threading.Thread(target=loop, args=("cleanup", cleanup_pass))
    cleanup.start()
    loop("compaction", compaction_pass)
    cleanup.join()
    out.write_text(json.dumps(runs))


def verify(work: Path, writers: int, per_writer: list[int], rows: int) -> dict[str, Any]:
    """Exactly once after the run: each writer's partition holds offsets 0..n-1 once, and the offsets say n."""
    from tabletopic.commit.committer import table_offsets

    table = _catalog(work).load_table(TABLE)
    scanned = table.scan(selected_fields=("_kafka_partition", "_kafka_offset")).to_arrow()
    pairs = list(zip(scanned["_kafka_partition"].to_pylist(), scanned["_kafka_offset"].to_pylist(), strict=True))
    expected = {(TOPIC, i): per_writer[i] * rows for i in range(writers)}
    offsets = table_offsets(table, GROUP)
    exact = all(sorted(o for p, o in pairs if p == i) == list(range(expected[(TOPIC, i)])) for i in range(writers))
    return {"rows": len(pairs), "distinct_rows": len(set(pairs)), "offsets_as_written": offsets == expected,
            "every_row_once": exact and len(pairs) == len(set(pairs)) == sum(expected.values()) + 100}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarise(records: list[tuple[float, float, int, int]], runs: list[dict[str, Any]], window: int,
              seconds: float) -> dict[str, Any]:
    records = sorted(records)
    first, last = [r[1] for r in records[:window]], [r[1] for r in records[-window:]]

    def stats(latencies: list[float]) -> dict[str, float]:
        return {"p50_ms": round(statistics.median(latencies) * 1000, 1),
                "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
                "max_ms": round(max(latencies) * 1000, 1)}

    runs = sorted(runs, key=lambda run: run["at"])
    snapshots = [run["snapshots"] for run in runs]
    compactions = [run for run in runs if "compaction_attempts" in run]
    start = records[0][0] - records[0][1] if records else 0.0
    tenth = max(1, len(runs) // 10)
    return {
        "commits": len(records),
        "seconds": round(seconds, 1),
        "commits_per_s": round(len(records) / seconds, 1),
        "first_window": stats(first),
        "last_window": stats(last),
        "p99_ratio_last_over_first": round(percentile(last, 0.99) / percentile(first, 0.99), 2),
        "attempts_mean": round(statistics.mean(r[2] for r in records), 2),
        "conflicts": sum(r[3] for r in records),
        "maintenance_runs": len(runs),
        "maintenance_errors": [run["error"] for run in runs if "error" in run][:5],
        "compactions": sum(1 for run in compactions if run.get("compacted")),
        "compactions_abandoned": sum(run["compaction_abandoned"] for run in compactions),
        "compaction_attempts": [run["compaction_attempts"] for run in compactions],
        "expiries": sum(1 for run in runs if run.get("expired")),
        "keys_carried": sum(run.get("carried", 0) for run in runs),
        "snapshots_max": max(snapshots, default=0),
        "snapshots_end": snapshots[-1] if snapshots else 0,
        "snapshots_over_time": [(round(run["at"] - start), run["snapshots"]) for run in runs[::tenth]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commits", type=int, default=50_000, help="in all, shared by the writers")
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--rows", type=int, default=10, help="rows per commit")
    parser.add_argument("--interval", type=float, default=0.5,
                        help="seconds from one commit's start to the next, per writer (a writer's commit interval)")
    parser.add_argument("--window", type=int, default=1000, help="commits in the first and last windows")
    parser.add_argument("--work", type=Path, default=None, help="catalog and warehouse folder (default: a temp one)")
    parser.add_argument("--out", type=Path, default=None, help="write the summary and every latency here (JSON)")
    parser.add_argument("--expire-older-than-s", type=float, default=30.0)
    parser.add_argument("--keep-snapshots", type=int, default=100)
    args = parser.parse_args()
    settings = {"check_interval_s": 2.0, "min_small_files": 50, "max_manifests": 100, "expire_interval_s": 10.0,
                "expire_older_than_s": args.expire_older_than_s, "keep_snapshots": args.keep_snapshots,
                "orphans_interval_s": 60.0, "orphans_older_than_s": 120.0}
    with tempfile.TemporaryDirectory(prefix="tabletopic-soak-") as temp:
        work = args.work or Path(temp)
        work.mkdir(parents=True, exist_ok=True)
        prepare(work)
        context = multiprocessing.get_context("spawn")
        go, stop = context.Event(), context.Event()
        per_writer = [args.commits // args.writers + (i < args.commits % args.writers) for i in range(args.writers)]
        writers = [context.Process(target=writer, args=(i, work, n, args.rows, args.interval, go,
                                                           work / f"writer-{i}.json"))
                   for i, n in enumerate(per_writer)]
        keeper = context.Process(target=maintenance, args=(work, settings, stop, work / "maintenance.json"))
        for process in [*writers, keeper]:
            process.start()
        started = time.monotonic()
        go.set()
        for process in writers:
            process.join()
        seconds = time.monotonic() - started
        stop.set()
        keeper.join()
        if any(p.exitcode != 0 for p in [*writers, keeper]):
            raise SystemExit(f"a process failed: {[p.exitcode for p in [*writers, keeper]]}")
        records = [tuple(r) for i in range(args.writers) for r in json.loads((work / f"writer-{i}.json").read_text())]
        runs = json.loads((work / "maintenance.json").read_text())
        summary = {"writers": args.writers, "rows_per_commit": args.rows, "interval_s": args.interval,
                   "settings": settings, **summarise(records, runs, args.window, seconds),
                   "check": verify(work, args.writers, per_writer, args.rows)}
        print(json.dumps(summary, indent=2))
        if args.out:
            args.out.write_text(json.dumps({"summary": summary, "commits": sorted(records), "maintenance": runs}))


if __name__ == "__main__":
    main()
