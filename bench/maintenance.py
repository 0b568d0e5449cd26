"""Maintenance against history: a table after many small commits, before and after `maintain`.

Builds a table the way a writer does (TableSink commits of 4 Kafka partitions, 2,000 rows
each, 240 commits), then measures: data files, snapshots, pyiceberg scan time, DuckDB scan
time, and the latency of one more commit (median of 9). The ceiling is a fresh table holding
the same rows in one commit, measured in the same run. Three histories:

- `none`: 240 commits, no maintenance;
- `after`: the same, then `maintain` once (compact, expire keeping 1, orphans);
- `during`: a compaction and an expiry every 40 commits while committing (commit latency
  during the writes is reported too).

    .venv/bin/python -m bench.maintenance [--commits 240]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
from pyiceberg.catalog.sql import SqlCatalog

from tabletopic import logs
from tabletopic.compaction.expire import expire
from tabletopic.compaction.orphans import remove_orphans
from tabletopic.compaction.rewrite import compact
from tabletopic.config import TableConfig
from tabletopic.core.backoff import RetryPolicy
from tabletopic.core.records import RecordChunk
from tabletopic.local.duckdb_extensions import extension_path
from tabletopic.sink import TableSink

PARTITIONS = 4
ROWS = 2000
TARGET = 64 << 20


class History:
    def __init__(self, work: Path, name: str) -> None:
        self.catalog = SqlCatalog(name, uri=f"sqlite:///{work}/{name}.db", warehouse=f"file://{work}/{name}")
        self.identifier = f"bench.{name}"
        spec = TableConfig(table=self.identifier, topic="t", partition_by=["identity(_kafka_partition)"])
        self.sink = TableSink(spec, self.catalog, "bench", "bench", RetryPolicy())
        self.next = dict.fromkeys(range(PARTITIONS), 0)

    def commit(self, rows_per_partition: int = ROWS) -> float:
        now = time.monotonic()
        for partition in range(PARTITIONS):
            first = self.next[partition]
            offsets = list(range(first, first + rows_per_partition))
            values: list[bytes | None] = [
                json.dumps({"n": o, "name": f"user-{o % 997}", "score": o / 7}).encode() for o in offsets]
            n = len(values)
            self.sink.ingest(RecordChunk("t", partition, offsets, [None] * n, values, [0] * n, [None] * n), now)
            self.next[partition] = first + rows_per_partition
        started = time.perf_counter()
        self.sink.flush()
        return time.perf_counter() - started

    def maintain(self) -> None:
        compact(self.catalog, self.identifier, TARGET)
        expire(self.catalog, self.identifier, older_than_ms=int(time.time() * 1000) + 1000, keep_last=1)
        remove_orphans(self.catalog, self.identifier, older_than_ms=int(time.time() * 1000) + 1000, dry_run=False)

    def measure(self) -> dict[str, Any]:
        table = self.catalog.load_table(self.identifier)
        started = time.perf_counter()
        rows = table.scan().to_arrow().num_rows
        pyiceberg_s = time.perf_counter() - started
        con = duckdb.connect()
        con.execute("SET autoinstall_known_extensions=false; SET autoload_known_extensions=false")
        for extension in ("avro", "iceberg"):
            con.execute(f"LOAD '{extension_path(extension, duckdb.__version__)}'")
        started = time.perf_counter()
        con.execute(f"SELECT max(n), count(*) FROM iceberg_scan('{table.metadata_location}')").fetchall()
        duckdb_s = time.perf_counter() - started
        latencies = sorted(self.commit(50) for _ in range(9))
        snapshot = table.current_snapshot()
        manifests = len(snapshot.manifests(table.io)) if snapshot else 0
        return {"rows": rows, "files": len(table.inspect.files()), "manifests": manifests,
                "snapshots": len(table.snapshots()),
                "pyiceberg_scan_s": round(pyiceberg_s, 3), "duckdb_scan_s": round(duckdb_s, 3),
                "commit_s": round(statistics.median(latencies), 3)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commits", type=int, default=240)
    args = parser.parse_args()
    logs.configure("warning")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        fresh = History(work, "fresh")
        fresh.commit(ROWS * args.commits)
        ceiling = fresh.measure()
        print(json.dumps({"history": "fresh (ceiling)", **ceiling}), flush=True)
        for name in ("none", "after", "during"):
            history = History(work, name)
            during: list[float] = []
            for i in range(args.commits):
                during.append(history.commit())
                if name == "during" and (i + 1) % 40 == 0:
                    history.maintain()
            if name == "after":
                history.maintain()
            figures = history.measure()
            ratios = {f"{k}_vs_fresh": round(figures[k] / ceiling[k], 2)
                      for k in ("pyiceberg_scan_s", "duckdb_scan_s", "commit_s")}
            print(json.dumps({"history": name, **figures, **ratios,
                              "commit_p50_during_s": round(statistics.median(during), 3),
                              "commit_p95_during_s": round(sorted(during)[int(len(during) * 0.95)], 3)}), flush=True)


if __name__ == "__main__":
    main()
