"""End-to-end benchmark: the real `tabletopic run` on a fixed dataset, against the stage ceiling,
for freshness at a steady rate, and (with --peer) against Apache Iceberg's Kafka Connect sink.

    .venv/bin/python -m bench.run [--records N] [--formats json,avro] [--workers 1,2] [--peer] [--quick]

Per format: the dataset (bench/dataset.py) is produced once to a 4-partition topic; the stages
(bench/stages.py) measure the ceiling on it; then for each worker count a fresh table and
consumer group are written by `tabletopic run` as a child process (commit interval 10 s,
maintenance and HTTP off, the table created beforehand with the dataset's columns and the
Kafka columns). When the writer's own counter of consumed records (its Prometheus files, read
from outside) reaches N it gets SIGTERM, as at the end of any deployment: it flushes, commits
and leaves, so no run waits out an idle commit interval. `tabletopic audit` must then exit 0.

Figures per run:
- wall: from the writer's start to the snapshot holding the last record (the snapshot's own
  timestamp); `excl. start-up`: from its first partition assignment (log) to that snapshot;
- records/s and MB/s (Kafka value bytes) over both; per core: over min(workers, cores);
- CPU: user + system of the writer's process tree (workers included), exactly, from wait4;
  `excl. start-up`: less the tree's CPU at the first assignment;
- memory: the largest process's peak resident set (its VmHWM) and the peak of the tree's
  summed resident set, both sampled every 0.1 s;
- ratio to the ceiling: records/s excl. start-up over (stage ceiling x min(workers, cores)),
  the commit stage scaled to the commits the run made.

Freshness: a second writer (the first worker count) on a fresh topic fed at 50% of the rate
measured for that format, each record stamped with its produce time; the table is polled every
0.25 s and each record's latency is (the first poll that sees a snapshot covering its offset -
its stamp); p50/p99 over records.

Peer (--peer): the catalog becomes the Iceberg REST catalog over S3 (moto) for every run;
the JSON topic is written by Kafka Connect's Iceberg sink (bench/peer/connect.py) and, for a
like-for-like pair, by tabletopic in the same mode (no SIGTERM: both wait for their interval
commit), both under `taskset -c` on the same CPUs.

Without --peer the catalog is pyiceberg's SQLite catalog with a local warehouse (--catalog rest
to use the REST catalog anyway). Results: a table on stdout and JSON in bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import cycle, islice
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from confluent_kafka import Message, Producer
from pyiceberg.catalog import Catalog
from pyiceberg.table import Table

from bench import dataset, plots
from bench.measure import machine
from bench.stages import StageResult, prepare_table, run_stages
from bench.writer import WriterProcess
from tabletopic import logs
from tabletopic.catalog.loader import open_catalog
from tabletopic.commit.committer import table_offsets
from tabletopic.config import CommitConfig, load_config
from tabletopic.local.kafka import LocalKafka
from tabletopic.local.registry import LocalRegistry
from tabletopic.local.rest_catalog import LocalRestCatalog
from tabletopic.local.s3 import LocalS3
from tabletopic.local.topics import create_topic

COMMIT_INTERVAL_S = 10.0
MiB = 2**20
RSS_ALLOWANCE = 300 * MiB  # the target: peak RSS <= buffer cap + 300 MiB
CORES = os.cpu_count() or 1


@dataclass
class Bench:
    work: Path
    kafka: LocalKafka
    registry: LocalRegistry | None
    rest: LocalRestCatalog | None
    s3: LocalS3 | None
    commit_interval_s: float
    cpus: str | None
    catalog_section: dict[str, Any] = field(default_factory=dict)
    kafka_settings: dict[str, str] = field(default_factory=dict)  # extra librdkafka settings for the writers
    catalog: Catalog | None = None
    table_settings: dict[str, Any] = field(default_factory=dict)  # merged into the table's config entry
    prepare: Callable[[Catalog, str, str], None] | None = None  # creates the table; default prepare_table

    @property
    def catalog_kind(self) -> str:
        return "Iceberg REST catalog over S3 (moto)" if self.rest else "pyiceberg SQLite catalog, local warehouse"

    def config(self, name: str, topic: str, table: str, fmt: str, workers: int, interval_s: float) -> Path:
        path = self.work / f"{name}.yaml"
        config: dict[str, Any] = {
            "kafka": {"bootstrap.servers": self.kafka.bootstrap, **self.kafka_settings},
            "group_id": f"bench-{name}",
            "workers": workers,
            "catalog": self.catalog_section,
            "commit": {"interval_seconds": interval_s},
            "maintenance": {"enabled": False},
            "http": {"enabled": False},
            "log_level": "info",
            "tables": [{"table": table, "topic": topic, "format": fmt, **self.table_settings}],
        }
        if self.registry is not None:
            config["schema_registry"] = {"url": self.registry.url}
        path.write_text(yaml.safe_dump(config))
        return path

    def open(self) -> Catalog:
        if self.catalog is None:
            probe = self.work / "catalog.yaml"
            probe.write_text(yaml.safe_dump({"kafka": {"bootstrap.servers": self.kafka.bootstrap},
                                             "catalog": self.catalog_section,
                                             "tables": [{"table": "bench.any", "topic": "any"}]}))
            self.catalog = open_catalog(load_config(probe, environ={}).catalog)
        return self.catalog


# --- one throughput run ----------------------------------------------------------------------


def consumed_records(metrics_dir: Path) -> int:
    """The writer's `tabletopic_records_consumed` counter, summed over its workers, from its metric files."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(metrics_dir))
    total = 0.0
    for family in registry.collect():
        if family.name == "tabletopic_records_consumed":
            total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return int(total)


def committed(catalog: Catalog, table: str, group: str, ends: dict[tuple[str, int], int]) -> float | None:
    """The timestamp (s) of the snapshot that made the table hold every record up to `ends`, else None."""
    loaded = catalog.load_table(table)
    offsets = table_offsets(loaded, group)
    if all(offsets.get(tp, 0) >= n for tp, n in ends.items()):
        snapshot = loaded.current_snapshot()
        return snapshot.timestamp_ms / 1000 if snapshot is not None else time.time()
    return None


def total_records(table: Table) -> int:
    snapshot = table.current_snapshot()
    summary = snapshot.summary if snapshot is not None else None
    return int(summary["total-records"] or 0) if summary is not None else 0


def audit(config: Path, topic: str, table: str) -> tuple[int, str]:
    import subprocess

    done = subprocess.run([sys.executable, "-m", "tabletopic", "audit", "--config", str(config), "--topic", topic,
                           "--table", table], capture_output=True, text=True, timeout=900)
    return done.returncode, (done.stdout + done.stderr)[-2000:]


def throughput(bench: Bench, produced: dataset.Produced, workers: int, stop_when_consumed: bool = True,
               timeout_s: float = 1800.0) -> dict[str, Any]:
    fmt, records = produced.format, produced.records
    name = f"{fmt}_w{workers}_{'stop' if stop_when_consumed else 'interval'}_{uuid.uuid4().hex[:6]}"
    table, group = f"bench.{name}", f"bench-{name}"
    catalog = bench.open()
    (bench.prepare or prepare_table)(catalog, table, fmt)
    config = bench.config(name, produced.topic, table, fmt, workers, bench.commit_interval_s)
    metrics_dir = bench.work / f"metrics-{name}"
    metrics_dir.mkdir()
    writer = WriterProcess(config, bench.work / f"{name}.log", {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
                           bench.cpus)
    consumed_at: float | None = None
    cpu_at_done: float | None = None
    done_at: float | None = None
    deadline = time.monotonic() + timeout_s
    next_check = 0.0
    rss_over_time: list[list[float]] = []  # [seconds from the writer's start, the tree's summed RSS in MiB]
    while done_at is None:
        if time.monotonic() > deadline:
            writer.stop()
            raise TimeoutError(f"{name}: not committed within {timeout_s:.0f}s\n{writer.log_tail()}")
        running = writer.alive()
        if stop_when_consumed and consumed_at is None and running and consumed_records(metrics_dir) >= records:
            consumed_at = time.time()
            writer.terminate()
        if time.monotonic() >= next_check:
            next_check = time.monotonic() + 0.5
            if writer.monitor.last is not None:
                rss_over_time.append([round(time.time() - writer.started_at, 2),
                                      round(writer.monitor.last.rss_bytes / MiB, 1)])
            if writer.assigned_at is not None:
                done_at = committed(catalog, table, group, produced.ends)
                if done_at is not None and writer.alive():
                    cpu_at_done = writer.monitor.sample().cpu_s
        if done_at is None and not running:
            done_at = committed(catalog, table, group, produced.ends)
            if done_at is None:
                raise RuntimeError(f"{name}: the writer exited ({writer.exit}) before committing every record\n"
                                   f"{writer.log_tail()}")
        time.sleep(0.1)
    exit_ = writer.stop()
    assigned_at = writer.assigned_at or writer.started_at
    wall_s = done_at - writer.started_at
    processing_s = done_at - assigned_at
    # Stopped when consumed: the exact total (its final commit included). Otherwise: the tree at the last commit.
    cpu_s = exit_.cpu_s if stop_when_consumed or cpu_at_done is None else cpu_at_done
    cpu_startup = writer.cpu_at_assigned or 0.0
    code, report = audit(config, produced.topic, table)
    loaded = catalog.load_table(table)
    rows = total_records(loaded)
    cores = min(workers, CORES)
    cap = CommitConfig().max_process_buffer_bytes
    return {
        "format": fmt, "workers": workers, "mode": "stop when consumed" if stop_when_consumed else "interval commit",
        "table": table, "records": records, "rows": rows, "audit_exit": code,
        "audit": report if code else report.splitlines()[-1] if report else "",
        "exit_code": exit_.code, "commits": len(loaded.snapshots()),
        "startup_s": round(assigned_at - writer.started_at, 2),
        "wall_s": round(wall_s, 2), "processing_s": round(processing_s, 2),
        "consumed_after_s": round(consumed_at - writer.started_at, 2) if consumed_at else None,
        "records_per_s": round(records / wall_s), "records_per_s_excl_startup": round(records / processing_s),
        "records_per_s_per_core_excl_startup": round(records / processing_s / cores),
        "mb_per_s": round(produced.value_bytes / wall_s / 1e6, 2),
        "mb_per_s_excl_startup": round(produced.value_bytes / processing_s / 1e6, 2),
        "cpu_s": round(cpu_s, 2), "cpu_s_excl_startup": round(cpu_s - cpu_startup, 2),
        "cpu_s_per_million": round(cpu_s / records * 1e6, 2),
        "cpu_s_per_million_excl_startup": round((cpu_s - cpu_startup) / records * 1e6, 2),
        "records_per_cpu_s_excl_startup": round(records / max(1e-9, cpu_s - cpu_startup)),
        "peak_rss_largest_process_mib": round(writer.monitor.peak_process_hwm_bytes / MiB, 1),
        "peak_rss_tree_sampled_mib": round(writer.monitor.peak_rss_bytes / MiB, 1),
        "rss_target_mib": round((cap + RSS_ALLOWANCE) / MiB),
        "rss_over_time": rss_over_time,
        "memory_paused": len(writer.named("memory.paused")),
        "errors": [e for e in writer.events if e.get("level") == "error"][:5],
        "cpus": bench.cpus or f"all {CORES}",
    }


def with_ceiling(run: dict[str, Any], stages: StageResult) -> None:
    cores = min(run["workers"], CORES)
    # w cores each take N/w records and their share of the run's commits (each worker commits its own
    # partitions): w x N / (a + b + c + commit each x commits), i.e. w x the one-core ceiling at those commits.
    ceiling = stages.ceiling(run["commits"]) * cores
    run["ceiling_records_per_s"] = round(ceiling)
    run["ratio_to_ceiling"] = round(run["records_per_s_excl_startup"] / ceiling, 3)


# --- freshness -------------------------------------------------------------------------------


class PacedProducer(threading.Thread):
    """Produces `values` (cycled) at `rate` records/s for `seconds` (or until `stop()`), each stamped with its
    produce time; keeps each record's stamp by (partition, offset) from the delivery reports."""

    def __init__(self, bootstrap: str, topic: str, values: list[bytes], rate: float, seconds: float,
                 partitions: int) -> None:
        super().__init__(daemon=True)
        self.topic, self.values, self.rate, self.seconds, self.partitions = topic, values, rate, seconds, partitions
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "compression.type": "lz4",
                                  "enable.idempotence": True})
        self.stamps: dict[int, dict[int, int]] = {p: {} for p in range(partitions)}
        self.sent = 0
        self.failed = 0
        self._stopped = threading.Event()

    def stop(self) -> None:
        self._stopped.set()

    def _delivered(self, error: Any, message: Message) -> None:
        if error is not None:
            self.failed += 1
            return
        _, stamp = message.timestamp()
        self.stamps[message.partition()][message.offset()] = stamp  # type: ignore[index]

    def run(self) -> None:
        started = time.monotonic()
        values = cycle(self.values)
        while (elapsed := time.monotonic() - started) < self.seconds and not self._stopped.is_set():
            due = int(self.rate * elapsed)
            now_ms = int(time.time() * 1000)
            for value in islice(values, max(0, due - self.sent)):
                while True:
                    try:
                        self.producer.produce(self.topic, value, partition=self.sent % self.partitions,
                                              timestamp=now_ms, on_delivery=self._delivered)
                        break
                    except BufferError:
                        self.producer.poll(0.01)
                self.sent += 1
            self.producer.poll(0)
            time.sleep(0.005)
        self.producer.flush(60)


Snapshots = list[tuple[float, float, dict[tuple[str, int], int]]]  # (poll time, snapshot time, offsets)


def watch_until_covered(catalog: Catalog, table: str, group: str, producer: PacedProducer, writer: WriterProcess,
                        timeout_s: float) -> Snapshots:
    """Polls `table` every 0.25 s until, the producer finished, a snapshot covers every record it sent:
    each new snapshot as it was first seen."""
    seen: Snapshots = []
    last_snapshot: int | None = None
    ends: dict[tuple[str, int], int] | None = None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        loaded = catalog.load_table(table)
        snapshot = loaded.current_snapshot()
        if snapshot is not None and snapshot.snapshot_id != last_snapshot:
            last_snapshot = snapshot.snapshot_id
            seen.append((time.time(), snapshot.timestamp_ms / 1000, table_offsets(loaded, group)))
        if ends is None and not producer.is_alive():
            ends = {(producer.topic, p): max(stamps) + 1 for p, stamps in producer.stamps.items() if stamps}
        if ends is not None and seen and all(seen[-1][2].get(tp, 0) >= n for tp, n in ends.items()):
            return seen
        if not writer.alive():
            raise RuntimeError(f"{table}: the writer exited\n{writer.log_tail()}")
        time.sleep(0.25)
    raise TimeoutError(f"{table}: the table never caught up with the producer\n{writer.log_tail()}")


def record_latencies(producer: PacedProducer, seen: Snapshots) -> tuple[np.ndarray, np.ndarray]:
    """Per record sent: (the first poll that saw a snapshot covering it, that snapshot's own time) - its stamp."""
    visible: list[np.ndarray] = []
    by_commit: list[np.ndarray] = []
    for partition, stamps in producer.stamps.items():
        offsets = np.fromiter(stamps.keys(), dtype=np.int64, count=len(stamps))
        produced_s = np.fromiter(stamps.values(), dtype=np.float64, count=len(stamps)) / 1000
        bounds = np.array([offs.get((producer.topic, partition), 0) for _, _, offs in seen], dtype=np.int64)
        index = np.searchsorted(bounds, offsets, side="right")  # the first snapshot past the offset
        visible.append(np.array([s[0] for s in seen])[index] - produced_s)
        by_commit.append(np.array([s[1] for s in seen])[index] - produced_s)
    return np.concatenate(visible), np.concatenate(by_commit)


def freshness(bench: Bench, fmt: str, workers: int, rate: float, seconds: float, interval_s: float) -> dict[str, Any]:
    name = f"fresh_{fmt}_w{workers}_{uuid.uuid4().hex[:6]}"
    topic, table, group = f"bench-{name}", f"bench.{name}", f"bench-{name}"
    partitions = dataset.PARTITIONS
    create_topic(bench.kafka.bootstrap, topic, partitions)
    encode = dataset.encoder(fmt, bench.registry.url if bench.registry else None, topic)
    values = [encode(e) for e in dataset.events(min(100_000, max(1, int(rate * seconds))), seed=dataset.SEED + 1)]
    catalog = bench.open()
    prepare_table(catalog, table, fmt)
    config = bench.config(name, topic, table, fmt, workers, interval_s)
    metrics_dir = bench.work / f"metrics-{name}"
    metrics_dir.mkdir()
    writer = WriterProcess(config, bench.work / f"{name}.log", {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
                           bench.cpus)
    try:
        deadline = time.monotonic() + 180
        while writer.assigned_at is None:
            if not writer.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{name}: the writer never got its partitions\n{writer.log_tail()}")
            time.sleep(0.1)
        producer = PacedProducer(bench.kafka.bootstrap, topic, values, rate, seconds, partitions)
        producer.start()
        seen = watch_until_covered(catalog, table, group, producer, writer, seconds + 3 * interval_s + 120)
    finally:
        writer.stop()
    latency, commit_latency = record_latencies(producer, seen)
    achieved = producer.sent / seconds
    p99 = float(np.percentile(latency, 99))
    return {
        "format": fmt, "workers": workers, "commit_interval_s": interval_s, "target_rate": round(rate),
        "achieved_rate": round(achieved), "seconds": seconds, "records": int(latency.size),
        "failed_deliveries": producer.failed, "commits": len(seen),
        "p50_s": round(float(np.percentile(latency, 50)), 2), "p99_s": round(p99, 2),
        "max_s": round(float(latency.max()), 2),
        "p99_by_snapshot_time_s": round(float(np.percentile(commit_latency, 99)), 2),
        # The distribution, for bench/plots.py: the latency at every percentile 0..100.
        "latency_quantiles_s": [round(float(q), 3) for q in np.percentile(latency, np.arange(101))],
        "target_p99_s": interval_s + 2, "met": p99 <= interval_s + 2,
    }


# --- the peer --------------------------------------------------------------------------------


def peer_run(bench: Bench, produced: dataset.Produced, timeout_s: float = 1800.0) -> dict[str, Any]:
    """Kafka Connect's Iceberg sink on the JSON topic into a table of the dataset's columns (no Kafka columns)."""
    from bench.peer import connect
    from tabletopic.catalog.tables import create_table, table_schema
    from tabletopic.local.s3 import ACCESS_KEY, REGION, SECRET_KEY

    assert bench.rest is not None and bench.s3 is not None
    catalog = bench.open()
    table = f"bench.peer_{uuid.uuid4().hex[:6]}"
    create_table(catalog, table, table_schema(dataset.value_schema("json"), False), [], {})
    sink = connect.ConnectSink(
        bench.work / f"connect-{table}", bench.kafka.bootstrap, produced.topic, table, bench.rest.uri,
        bench.s3.endpoint, ACCESS_KEY, SECRET_KEY, REGION, commit_interval_s=bench.commit_interval_s,
        cpus=bench.cpus, tasks=produced.partitions,
    )
    started = time.time()
    try:
        sink.start()
        ready = time.time()
        cpu_ready = sink.cpu_seconds()
        connect.wait_committed(catalog, table, produced.records, timeout_s, sink=sink)
        cpu = sink.cpu_seconds()
        rss = sink.peak_rss_bytes()
    finally:
        sink.stop()
    loaded = catalog.load_table(table)
    snapshot = loaded.current_snapshot()
    assert snapshot is not None
    done = snapshot.timestamp_ms / 1000
    rows = total_records(loaded)
    records = produced.records
    return {
        "system": "Kafka Connect Iceberg sink", "tasks": produced.partitions, "records": records, "rows": rows,
        "commits": len(loaded.snapshots()), "startup_s": round(ready - started, 2),
        "wall_s": round(done - started, 2), "processing_s": round(done - ready, 2),
        "records_per_s": round(records / (done - started)),
        "records_per_s_excl_startup": round(records / (done - ready)),
        "cpu_s": round(cpu, 2), "cpu_s_excl_startup": round(cpu - cpu_ready, 2),
        "cpu_s_per_million": round(cpu / records * 1e6, 2),
        "cpu_s_per_million_excl_startup": round((cpu - cpu_ready) / records * 1e6, 2),
        "peak_rss_mib": round(rss / MiB, 1), "cpus": bench.cpus or f"all {CORES}",
    }


# --- report ----------------------------------------------------------------------------------


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths,
                                                                                              strict=True)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def report(results: dict[str, Any]) -> str:
    settings = results["settings"]
    out = [f"catalog: {settings['catalog']}; commit interval {settings['commit_interval_s']} s; "
           f"cpus: {settings['cpus']}; extra librdkafka settings: {settings['kafka_settings'] or 'none'}"]
    start, end = results.get("code_at_start", {}), results.get("code_at_end", {})
    out.append(f"code: {start.get('commit')}, uncommitted in tabletopic/: {start.get('uncommitted') or 'none'}")
    if end and end.get("tabletopic_sources_sha256") != start.get("tabletopic_sources_sha256"):
        out.append("WARNING: tabletopic's sources changed during the run: later writers ran other code")
    rows = [["stage ceiling", "records", "consume µs", "decode µs", "write µs", "commit ms/commit", "commits",
             "ceiling rec/s", "CPU-only ceiling"]]
    for fmt, stage in results["stages"].items():
        us = stage["us_per_record"]
        rows.append([fmt, str(stage["records"]), f"{us['consume']:.2f}", f"{us['decode']:.2f}",
                     f"{us['write']:.2f}", f"{stage['commit_s_each'] * 1000:.0f}", str(stage["commits"]),
                     f"{stage['ceiling_records_per_s']:,}", f"{stage['cpu_ceiling_records_per_s']:,}"])
    out += ["", _table(rows)]
    parts = [["stage parts (µs/record)", *results["stages"].keys()]]
    names = sorted({k for s in results["stages"].values() for k in s["parts_us_per_record"]})
    for label in names:
        parts.append([label, *(f"{s['parts_us_per_record'].get(label, float('nan')):.3f}"
                               for s in results["stages"].values())])
    out += ["", _table(parts)]
    rows = [["run", "rec/s", "rec/s excl start", "per core", "MB/s", "CPU s/M", "CPU s/M excl", "peak RSS MiB",
             "commits", "ceiling", "ratio", "audit"]]
    for run in results["runs"]:
        rows.append([f"{run['format']} w{run['workers']} {run['mode']}", f"{run['records_per_s']:,}",
                     f"{run['records_per_s_excl_startup']:,}", f"{run['records_per_s_per_core_excl_startup']:,}",
                     f"{run['mb_per_s_excl_startup']:.1f}", f"{run['cpu_s_per_million']:.1f}",
                     f"{run['cpu_s_per_million_excl_startup']:.1f}", f"{run['peak_rss_largest_process_mib']:.0f}",
                     str(run["commits"]), f"{run.get('ceiling_records_per_s', 0):,}",
                     f"{run.get('ratio_to_ceiling', float('nan')):.2f}", "OK" if run["audit_exit"] == 0 else "FAILED"])
    out += ["", _table(rows)]
    if results["freshness"]:
        rows = [["freshness", "rate", "interval s", "p50 s", "p99 s", "max s", "target", "met"]]
        for f in results["freshness"]:
            rows.append([f"{f['format']} w{f['workers']}", f"{f['achieved_rate']:,}", f"{f['commit_interval_s']:.0f}",
                         f"{f['p50_s']:.2f}", f"{f['p99_s']:.2f}", f"{f['max_s']:.2f}", f"{f['target_p99_s']:.0f}",
                         "yes" if f["met"] else "no"])
        out += ["", _table(rows)]
    if results.get("peer"):
        peer = results["peer"]
        out += ["", f"peer ({peer['system']}, {peer['tasks']} tasks): {peer['records_per_s']:,} rec/s, "
                    f"{peer['records_per_s_excl_startup']:,} excl start-up, CPU {peer['cpu_s_per_million']:.1f} s/M "
                    f"({peer['cpu_s_per_million_excl_startup']:.1f} excl start-up), "
                    f"peak RSS {peer['peak_rss_mib']:.0f} MiB"]
        for key, value in results.get("peer_ratios", {}).items():
            out.append(f"  {key}: {value}")
    out += ["", "targets:"] + [f"  {t['target']}: {t['verdict']} ({t['detail']})" for t in results["targets"]]
    return "\n".join(out)


def targets(results: dict[str, Any]) -> list[dict[str, str]]:
    found: list[dict[str, str]] = []

    def add(target: str, met: bool | None, detail: str) -> None:
        found.append({"target": target, "verdict": "n/a" if met is None else "met" if met else "NOT met",
                      "detail": detail})

    stop_runs = [r for r in results["runs"] if r["mode"] == "stop when consumed"]
    for fmt in results["formats"]:
        runs = [r for r in stop_runs if r["format"] == fmt]
        if not runs:
            continue
        best = max(runs, key=lambda r: r["records_per_s_per_core_excl_startup"])
        per_core = best["records_per_s_per_core_excl_startup"]
        add(f">=100k records/s per core end to end ({fmt})", per_core >= 100_000,
            f"{per_core:,}/s per core, w{best['workers']}, excl. start-up = {per_core / 100_000:.2f}x target; "
            f"{best['records_per_cpu_s_excl_startup']:,} records per CPU-second")
        one = next((r for r in runs if r["workers"] == 1), runs[0])
        add(f">=75% of the stage ceiling ({fmt}, w{one['workers']})", one["ratio_to_ceiling"] >= 0.75,
            f"{one['ratio_to_ceiling']:.0%} of {one['ceiling_records_per_s']:,}/s")
    ratios = results.get("peer_ratios")
    if ratios:
        add(">=1.5x Kafka Connect sink records/s (json)", ratios["records_per_s_ratio"] >= 1.5,
            f"{ratios['records_per_s_ratio']:.2f}x (excl. start-up: {ratios['records_per_s_ratio_excl_startup']:.2f}x)")
        add("less CPU per record than Kafka Connect sink (json)", ratios["cpu_per_record_ratio_excl_startup"] < 1,
            f"tabletopic/peer CPU per record {ratios['cpu_per_record_ratio_excl_startup']:.2f}x excl. start-up, "
            f"{ratios['cpu_per_record_ratio']:.2f}x with it")
    else:
        add(">=1.5x Kafka Connect sink records/s, less CPU per record", None, "peer not run (--peer)")
    for f in results["freshness"]:
        add(f"freshness p99 <= interval + 2 s at 50% max rate ({f['format']})", f["met"],
            f"p99 {f['p99_s']:.2f} s vs {f['target_p99_s']:.0f} s at {f['achieved_rate']:,}/s")
    for run in stop_runs:
        add(f"peak RSS <= buffer cap + 300 MiB ({run['format']} w{run['workers']})",
            run["peak_rss_largest_process_mib"] <= run["rss_target_mib"],
            f"largest process {run['peak_rss_largest_process_mib']:.0f} MiB vs {run['rss_target_mib']} MiB; "
            f"tree sum {run['peak_rss_tree_sampled_mib']:.0f} MiB")
    return found


# --- main ------------------------------------------------------------------------------------


def code_version() -> dict[str, Any]:
    """The commit, and tabletopic's uncommitted files with a digest of its sources: others may edit them
    while a run goes on, and each writer process imports what is on disk when it starts."""
    import hashlib
    import subprocess

    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    digest = hashlib.sha256()
    for path in sorted((root / "tabletopic").rglob("*.py")):
        digest.update(path.read_bytes())
    return {"commit": git("rev-parse", "--short", "HEAD"),
            "uncommitted": git("status", "--porcelain", "--", "tabletopic").splitlines(),
            "tabletopic_sources_sha256": digest.hexdigest()[:16]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="End-to-end benchmark of `tabletopic run` against the stage ceiling, for freshness, "
                    "and optionally against Kafka Connect's Iceberg sink.")
    parser.add_argument("--records", type=int, default=None, help="records per format (default 1,000,000; "
                                                                   "200,000 with --quick)")
    parser.add_argument("--formats", default="json,avro")
    parser.add_argument("--workers", default="1,2", help="worker counts to run, e.g. 1,2")
    parser.add_argument("--peer", action=argparse.BooleanOptionalAction, default=False,
                        help="also run Kafka Connect's Iceberg sink (JSON), on the REST catalog over S3")
    parser.add_argument("--quick", action="store_true", help="200k records, 20 s of freshness")
    parser.add_argument("--catalog", choices=("sqlite", "rest"), default=None,
                        help="default: sqlite, or rest with --peer")
    parser.add_argument("--cpus", default=None, help="taskset -c list for the writers (and the peer); "
                                                     "default: all cores with --peer, else unpinned")
    parser.add_argument("--commit-interval", type=float, default=COMMIT_INTERVAL_S)
    parser.add_argument("--kafka-setting", action="append", default=[], metavar="KEY=VALUE",
                        help="a librdkafka setting for the writers and the consume stage (repeatable), "
                             "e.g. fetch.queue.backoff.ms=10")
    parser.add_argument("--freshness-seconds", type=float, default=None, help="default 60 (20 with --quick); "
                                                                              "0 skips the phase")
    parser.add_argument("--out", type=Path, default=None, help="JSON results (default bench/results/<time>.json)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, configs)")
    parser.add_argument("--plots", type=Path, default=None,
                        help="folder for the figures (PNGs; default: beside the JSON results, in a folder named "
                             "after them; docs/img refreshes docs/benchmarks.md's)")
    args = parser.parse_args(argv)
    records = args.records or (200_000 if args.quick else 1_000_000)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    fresh_s = args.freshness_seconds if args.freshness_seconds is not None else (20.0 if args.quick else 60.0)
    catalog_kind = args.catalog or ("rest" if args.peer else "sqlite")
    if args.peer and catalog_kind != "rest":
        parser.error("--peer needs the REST catalog (the peer writes through it)")
    cpus = args.cpus or (f"0-{CORES - 1}" if args.peer else None)
    kafka_settings = dict(item.split("=", 1) for item in args.kafka_setting)
    stamp = datetime.now(UTC)
    out = args.out or Path(__file__).parent / "results" / f"{stamp:%Y-%m-%dT%H%M%S}.json"
    logs.configure("warning")

    work = Path(tempfile.mkdtemp(prefix="tabletopic-bench-"))
    services: list[Callable[[], None]] = []
    results: dict[str, Any] = {
        "started": stamp.isoformat(timespec="seconds"), "command": " ".join(["python -m bench.run", *sys.argv[1:]]),
        "machine": machine(), "formats": formats, "code_at_start": code_version(),
        "settings": {"records": records, "partitions": dataset.PARTITIONS, "workers": workers,
                     "commit_interval_s": args.commit_interval, "cpus": cpus or "unpinned",
                     "kafka_settings": kafka_settings,
                     "producer": dict(dataset.PRODUCER_SETTINGS)},
        "datasets": {}, "stages": {}, "runs": [], "freshness": [], "peer": None,
    }
    try:
        kafka = LocalKafka(work / "kafka").start()
        services.append(kafka.stop)
        registry = None
        if "avro" in formats:
            registry = LocalRegistry(work / "registry").start()
            services.append(registry.stop)
        s3 = rest = None
        if catalog_kind == "rest":
            s3 = LocalS3(work / "s3").start()
            services.append(s3.stop)
            rest = LocalRestCatalog(work / "rest", s3).start()
            services.append(rest.stop)
            section: dict[str, Any] = {"name": "lake", **rest.client_properties()}
        else:
            section = {"warehouse": str(work / "warehouse")}
        bench = Bench(work, kafka, registry, rest, s3, args.commit_interval, cpus, section, kafka_settings)
        results["settings"]["catalog"] = bench.catalog_kind
        for fmt in formats:
            print(f"[{fmt}] producing {records:,} records", file=sys.stderr, flush=True)
            produced = dataset.produce(kafka.bootstrap, f"bench-{fmt}", fmt, records,
                                       registry_url=registry.url if registry else None)
            results["datasets"][fmt] = {"topic": produced.topic, "records": records,
                                        "bytes_per_record": round(produced.bytes_per_record, 1),
                                        "value_mb": round(produced.value_bytes / 1e6, 1),
                                        "produce_s": round(produced.seconds, 1)}
            print(f"[{fmt}] stages", file=sys.stderr, flush=True)
            stages = run_stages(kafka.bootstrap, bench.open(), produced.topic, fmt, records,
                                registry.url if registry else None, kafka=kafka_settings)
            results["stages"][fmt] = stages.to_json()
            best_rate = 0
            for count in workers:
                print(f"[{fmt}] tabletopic run, {count} worker(s)", file=sys.stderr, flush=True)
                run = throughput(bench, produced, count)
                with_ceiling(run, stages)
                results["runs"].append(run)
                print(json.dumps({k: run[k] for k in ("format", "workers", "records_per_s_excl_startup",
                                                      "cpu_s_per_million", "ratio_to_ceiling", "audit_exit")}),
                      file=sys.stderr, flush=True)
                if count == workers[0]:
                    best_rate = run["records_per_s_excl_startup"]
            if args.peer and fmt == "json":
                print("[json] peer: Kafka Connect Iceberg sink", file=sys.stderr, flush=True)
                results["peer"] = peer_run(bench, produced)
                pair = max(workers)
                print(f"[json] tabletopic run, {pair} worker(s), interval commit (like the peer)", file=sys.stderr,
                      flush=True)
                mine = throughput(bench, produced, pair, stop_when_consumed=False)
                with_ceiling(mine, stages)
                results["runs"].append(mine)
                peer = results["peer"]
                results["peer_ratios"] = {
                    "tabletopic_run": f"json w{pair}, interval commit",
                    "records_per_s_ratio": round(mine["records_per_s"] / peer["records_per_s"], 2),
                    "records_per_s_ratio_excl_startup": round(
                        mine["records_per_s_excl_startup"] / peer["records_per_s_excl_startup"], 2),
                    "cpu_per_record_ratio": round(mine["cpu_s"] / peer["cpu_s"], 2),
                    "cpu_per_record_ratio_excl_startup": round(
                        mine["cpu_s_excl_startup"] / max(1e-9, peer["cpu_s_excl_startup"]), 2),
                }
            if fresh_s > 0 and best_rate:
                print(f"[{fmt}] freshness at {best_rate // 2:,}/s for {fresh_s:.0f} s", file=sys.stderr, flush=True)
                results["freshness"].append(freshness(bench, fmt, workers[0], best_rate / 2, fresh_s,
                                                      args.commit_interval))
        results["targets"] = targets(results)
        results["code_at_end"] = code_version()
    finally:
        for stop in reversed(services):
            stop()
        if args.keep:
            print(f"work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(report(results))
    print(f"\nresults: {out}")
    for figure in plots.draw(results, args.plots or out.with_suffix("")):
        print(f"figure: {figure}")
    return 0 if all(r["audit_exit"] == 0 for r in results["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
