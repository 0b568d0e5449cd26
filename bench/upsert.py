"""Upsert tables (issue 17): throughput beside append, query time before and after compaction, and the
equality-delete files that maintenance keeps bounded, in one run on the embedded stack.

    .venv/bin/python -m bench.upsert [--changes 1000000] [--keys 200000] [--tombstones 0.2] [--workers 1] [--pairs 1]
                                     [--maintenance-seconds 180] [--profile]

1. The keyed dataset, produced once: `--changes` records to `--keys` keys (uniform, seeded), a share
   `--tombstones` of them tombstones (null value). The Kafka key is JSON `{"id": n}`; each key goes to
   partition n % 4, so its changes keep their order. A value is bench/dataset.py's event plus `"id": n`
   (~370 bytes). A pure Python model of the topic (the last change per key) gives the rows the upsert
   table must end with.
2. Throughput: bench/run.py's `throughput()` (the real `tabletopic run` as a child process, SIGTERM when
   its consumed counter reaches N, `tabletopic audit` after) on the same topic, once into an append table
   (a tombstone becomes a row of nulls there) and once into an upsert table (`mode: upsert`, keyed by
   the Kafka key), same worker count and commit interval; both tables created beforehand with the same
   value columns (`id` + the event's columns + the Kafka columns; the upsert table's `id` its identifier
   field). Ratio = upsert / append records/s per core excl. start-up (target >= 0.7); with `--pairs N`,
   N pairs alternating which mode runs first, the ratio of the medians.
3. Queries on the upsert table, before and after `tabletopic compact` (the CLI, timed): DuckDB
   (`iceberg_scan`: count(*) and a filtered select) and tabletopic's own delete-aware reader
   (`tabletopic.catalog.reader.read`: all rows, and the same filter); median of 3 each, and the row count
   each returns against the model's. Spark is not started: it reads through a REST catalog over S3 and
   the JVM's start-up under CI load would dominate; the SQLite catalog here has no Spark client.
4. Delete files bounded: a fresh topic and upsert table, a writer with maintenance on
   (`max_delete_files` 20, `check_interval_seconds` 5, commit interval 2 s) fed keyed changes at
   `--rate` for `--maintenance-seconds`; the live equality-delete files of the current snapshot are
   counted every 10 s (`reader.live_files(table).equality_deletes`): the series, its max and last.
5. Profile (`--profile`, or automatically when the ratio misses 0.7): in one process, the records of the
   topic consumed once, then `TableSink.ingest` + `flush` into a fresh append table and a fresh upsert
   table (flushing at `commit.max_buffer_bytes` as the writer does), the upsert path's functions timed
   by wrapping them, and cProfile's top functions for the upsert side.

Results: a summary on stdout and JSON in bench/results/upsert-<time>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pyarrow as pa
import yaml
from confluent_kafka import Producer
from pyiceberg.catalog import Catalog

from bench import dataset
from bench.measure import machine
from bench.run import CORES, Bench, code_version, throughput
from bench.stages import Probe, consume_all
from bench.writer import WriterProcess
from tabletopic import logs
from tabletopic.catalog import reader
from tabletopic.catalog.tables import create_table, table_schema
from tabletopic.config import CommitConfig, TableConfig
from tabletopic.core.backoff import RetryPolicy
from tabletopic.core.upsert_mode import UpsertMode
from tabletopic.local.kafka import LocalKafka
from tabletopic.local.topics import create_topic
from tabletopic.sink import TableSink

KEY = "id"
KEY_SCHEMA = pa.schema([pa.field(KEY, pa.int64(), nullable=False)])
VALUE_SCHEMA = pa.schema([pa.field(KEY, pa.int64()), *dataset.JSON_VALUE_SCHEMA])
UPSERT = UpsertMode("kafka-key", "json")
FILTER_SQL = "page = '/cart' AND amount > 250"
FILTER_ICEBERG = "page = '/cart' and amount > 250.0"
RATIO_TARGET = 0.7


# --- the keyed dataset -----------------------------------------------------------------------


@dataclass
class Changes:
    """A seeded stream of keyed changes, and the model of the topic: the last change per key."""

    keys: int
    tombstones: float
    seed: int = dataset.SEED
    produced: int = 0
    tombstones_produced: int = 0
    last_is_upsert: dict[int, bool] = field(default_factory=dict)
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def next(self, count: int) -> Iterator[tuple[int, bytes, bytes | None]]:
        """(partition, key, value or None) for the next `count` changes."""
        for event in dataset.events(count, self.seed, first=self.produced):
            n = self._rng.randrange(self.keys)
            upsert = self._rng.random() >= self.tombstones
            self.last_is_upsert[n] = upsert
            self.produced += 1
            self.tombstones_produced += not upsert
            value = dataset.encode_json({KEY: n, **event}) if upsert else None
            yield n % dataset.PARTITIONS, b'{"id":%d}' % n, value

    @property
    def live_keys(self) -> int:
        return sum(self.last_is_upsert.values())


def _producer(bootstrap: str) -> Producer:
    return Producer({"bootstrap.servers": bootstrap, **dataset.PRODUCER_SETTINGS})


def _send(producer: Producer, topic: str, partition: int, key: bytes, value: bytes | None) -> None:
    while True:
        try:
            producer.produce(topic, value, key, partition=partition)
            return
        except BufferError:
            producer.poll(0.05)


def produce_changes(bootstrap: str, topic: str, changes: Changes, count: int) -> dataset.Produced:
    create_topic(bootstrap, topic, dataset.PARTITIONS)
    producer = _producer(bootstrap)
    started = time.perf_counter()
    value_bytes = 0
    for n, (partition, key, value) in enumerate(changes.next(count)):
        value_bytes += len(value) if value is not None else 0
        _send(producer, topic, partition, key, value)
        if n % 20_000 == 0:
            producer.poll(0)
    if producer.flush(120):
        raise RuntimeError(f"records not delivered to {topic}")
    seconds = time.perf_counter() - started
    ends = dataset.log_ends(bootstrap, topic, dataset.PARTITIONS)
    if sum(ends.values()) != count:
        raise RuntimeError(f"{topic} holds {sum(ends.values())} records, not {count}")
    return dataset.Produced(topic, "json", count, dataset.PARTITIONS, value_bytes, seconds, ends)


class PacedChanges(threading.Thread):
    """Produces the next changes of `changes` at `rate` records/s for `seconds`."""

    def __init__(self, bootstrap: str, topic: str, changes: Changes, rate: float, seconds: float) -> None:
        super().__init__(daemon=True)
        self.topic, self.changes, self.rate, self.seconds = topic, changes, rate, seconds
        self.producer = _producer(bootstrap)
        self.sent = 0

    def run(self) -> None:
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < self.seconds:
            due = int(self.rate * elapsed) - self.sent
            if due > 0:
                for partition, key, value in self.changes.next(due):
                    _send(self.producer, self.topic, partition, key, value)
                self.sent += due
            self.producer.poll(0)
            time.sleep(0.01)
        self.producer.flush(60)


# --- tables ----------------------------------------------------------------------------------


def prepare_append(catalog: Catalog, identifier: str, fmt: str) -> None:
    create_table(catalog, identifier, table_schema(VALUE_SCHEMA, True), [], {})


def prepare_upsert(catalog: Catalog, identifier: str, fmt: str) -> None:
    create_table(catalog, identifier, table_schema(VALUE_SCHEMA, True, KEY_SCHEMA), [], UPSERT.properties(),
                 identifier_fields=[KEY])


def with_table(bench: Bench, upsert: bool) -> Bench:
    """`bench` making and configuring its tables as append or upsert ones."""
    from dataclasses import replace

    if upsert:
        return replace(bench, table_settings={"mode": "upsert"}, prepare=prepare_upsert)
    return replace(bench, table_settings={}, prepare=prepare_append)


# --- queries ---------------------------------------------------------------------------------


def _timed(run: Callable[[], Any], repeats: int = 3, slow_s: float = 20.0) -> tuple[float, Any]:
    """The median seconds of `repeats` runs (one run only when the first takes `slow_s` or more)."""
    seconds, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        seconds.append(time.perf_counter() - started)
        if seconds[0] >= slow_s:
            break
    return statistics.median(seconds), result


def query_times(catalog: Catalog, identifier: str, duckdb_deadline_s: float) -> dict[str, Any]:
    """DuckDB and tabletopic's reader on the table as it is: median seconds and the rows each returns.
    A DuckDB query still running after `duckdb_deadline_s` is interrupted and reported as such."""
    import duckdb

    from tabletopic.local.duckdb_extensions import extension_path

    table = catalog.load_table(identifier)
    listing = reader.live_files(table)
    out: dict[str, Any] = {"data_files": len(listing.data), "equality_delete_files": len(listing.equality_deletes),
                           "position_delete_files": len(listing.position_deletes)}
    con = duckdb.connect()
    con.execute("SET autoinstall_known_extensions=false; SET autoload_known_extensions=false")
    for extension in ("avro", "iceberg"):
        con.execute(f"LOAD '{extension_path(extension, duckdb.__version__)}'")
    scan = f"iceberg_scan('{table.metadata_location}')"
    for label, sql in (("duckdb_count", f"SELECT count(*) FROM {scan}"),
                       ("duckdb_filtered", f"SELECT count(*), sum(amount) FROM (SELECT * FROM {scan} "
                                           f"WHERE {FILTER_SQL})")):
        def fetch(sql: str = sql) -> Any:
            timer = threading.Timer(duckdb_deadline_s, con.interrupt)
            timer.start()
            try:
                return con.execute(sql).fetchall()
            finally:
                timer.cancel()

        started = time.perf_counter()
        try:
            seconds, rows = _timed(fetch)
            out[label] = {"s": round(seconds, 3), "rows": int(rows[0][0])}
        except Exception as exc:  # a reader that cannot read the table (in time) is a finding, not a crash
            out[label] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}",
                          "after_s": round(time.perf_counter() - started, 1)}
    con.close()
    for label, row_filter in (("reader_all", reader.ALWAYS_TRUE), ("reader_filtered", FILTER_ICEBERG)):
        def rows_read(row_filter: Any = row_filter) -> int:
            return reader.read(table, row_filter=row_filter).num_rows

        seconds, rows = _timed(rows_read)
        out[label] = {"s": round(seconds, 3), "rows": rows}
    return out


def compact_cli(config: Path, identifier: str) -> dict[str, Any]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "tabletopic", "compact", "--config", str(config), "--table",
                           identifier], capture_output=True, text=True, timeout=1800)
    return {"s": round(time.perf_counter() - started, 2), "exit": done.returncode,
            "output": (done.stdout + done.stderr).strip()[-600:]}


# --- delete files under maintenance ----------------------------------------------------------


def bounded_deletes(bench: Bench, changes: Changes, rate: float, seconds: float, max_delete_files: int,
                    check_s: float, commit_s: float, sample_s: float = 10.0) -> dict[str, Any]:
    name = f"maint_{uuid.uuid4().hex[:6]}"
    topic, identifier = f"bench-{name}", f"bench.{name}"
    create_topic(bench.kafka.bootstrap, topic, dataset.PARTITIONS)
    catalog = bench.open()
    prepare_upsert(catalog, identifier, "json")
    config = with_table(bench, upsert=True).config(name, topic, identifier, "json", 1, commit_s)
    settings = yaml.safe_load(config.read_text())
    settings["maintenance"] = {"enabled": True, "check_interval_seconds": check_s,
                               "max_delete_files": max_delete_files}
    config.write_text(yaml.safe_dump(settings))
    writer = WriterProcess(config, bench.work / f"{name}.log", {}, bench.cpus)
    feeder = PacedChanges(bench.kafka.bootstrap, topic, changes, rate, seconds)
    series: list[dict[str, Any]] = []
    try:
        feeder.start()
        started = time.monotonic()
        while feeder.is_alive() or time.monotonic() - started < seconds + 2 * commit_s:
            time.sleep(max(0.0, started + len(series) * sample_s - time.monotonic()))
            if not writer.alive():
                raise RuntimeError(f"{name}: the writer exited ({writer.exit})\n{writer.log_tail()}")
            listing = reader.live_files(catalog.load_table(identifier))
            series.append({"t_s": round(time.monotonic() - started), "equality_deletes": len(listing.equality_deletes),
                           "data_files": len(listing.data)})
            print(f"  t={series[-1]['t_s']:>4}s deletes={series[-1]['equality_deletes']} "
                  f"data files={series[-1]['data_files']}", file=sys.stderr, flush=True)
    finally:
        exit_ = writer.stop()
    triggered = [e for e in writer.events if e.get("event") == "maintenance.triggered" and e.get("action") == "compact"]
    counts = [s["equality_deletes"] for s in series]
    return {"table": identifier, "rate": rate, "seconds": seconds, "sent": feeder.sent,
            "max_delete_files": max_delete_files, "check_interval_s": check_s, "commit_interval_s": commit_s,
            "series": series, "max": max(counts, default=0), "last": counts[-1] if counts else 0,
            "commits": len(catalog.load_table(identifier).snapshots()), "exit_code": exit_.code,
            "compactions_triggered": [str(e.get("reason")) for e in triggered],
            "compactions_done": len(writer.named("compaction.done")),
            "errors": [e for e in writer.events if e.get("level") == "error"][:5]}


# --- profile ---------------------------------------------------------------------------------


def profile_paths(bench: Bench, produced: dataset.Produced, top: int = 25) -> dict[str, Any]:
    """Ingest + flush of the same records into an append and an upsert table, in this process."""
    import tabletopic.commit.upsert_files as upsert_files
    import tabletopic.upsert.payload as payload
    from tabletopic.decode.json import JsonDecoder
    from tabletopic.decode.keys import KeyDecoder
    from tabletopic.sink.keyed_intake import KeyedIntake

    polls, _ = consume_all(bench.kafka.bootstrap, produced.topic, produced.records, kafka=bench.kafka_settings)
    cap = CommitConfig().max_buffer_bytes
    catalog = bench.open()
    out: dict[str, Any] = {}
    for mode in ("append", "upsert"):
        identifier = f"bench.profile_{mode}_{uuid.uuid4().hex[:6]}"
        (prepare_upsert if mode == "upsert" else prepare_append)(catalog, identifier, "json")
        spec = TableConfig(table=identifier, topic=produced.topic, format="json",
                           mode="upsert" if mode == "upsert" else None)
        sink = TableSink(spec, catalog, f"bench-{identifier}", "bench-profile", RetryPolicy())
        probe = Probe()
        profiler = cProfile.Profile()
        ingest_s = flush_s = 0.0
        commits = 0
        with contextlib.ExitStack() as stack:
            if mode == "upsert":
                for owner, name, label in (
                        (KeyedIntake, "read", "intake.KeyedIntake.read"),
                        (KeyedIntake, "_bad_keys", "intake.keys_checked (KeyDecoder.decode of upserts)"),
                        (KeyedIntake, "_delete_keys", "intake.tombstone_keys"),
                        (KeyDecoder, "decode", "keys.KeyDecoder.decode (all calls)"),
                        (JsonDecoder, "decode", "decode.JsonDecoder.decode"),
                        (payload.UpsertPayload, "write", "commit.UpsertPayload.write"),
                        (payload, "conform_table", "commit.write.conform_table"),
                        (payload, "plan_upsert", "commit.write.plan_upsert"),
                        (payload, "write_data_files", "commit.write.write_data_files"),
                        (payload, "write_equality_deletes", "commit.write.write_equality_deletes"),
                        (payload.UpsertPayload, "commit", "commit.UpsertPayload.commit"),
                        (upsert_files, "commit_upsert", "commit.commit_upsert")):
                    stack.enter_context(probe.wrap(owner, name, label))
            else:
                stack.enter_context(probe.wrap(JsonDecoder, "decode", "decode.JsonDecoder.decode"))
            if mode == "upsert":
                profiler.enable()
            for chunks in polls:
                started = time.perf_counter()
                now = time.monotonic()
                for chunk in chunks:
                    sink.ingest(chunk, now)
                ingest_s += time.perf_counter() - started
                if sink.buffer.nbytes >= cap or chunks is polls[-1]:
                    started = time.perf_counter()
                    outcome = sink.flush()
                    flush_s += time.perf_counter() - started
                    commits += 1 if outcome is not None and outcome.committed else 0
            profiler.disable()
        n = produced.records
        result: dict[str, Any] = {
            "ingest_us_per_record": round(ingest_s / n * 1e6, 3), "flush_us_per_record": round(flush_s / n * 1e6, 3),
            "total_us_per_record": round((ingest_s + flush_s) / n * 1e6, 3), "commits": commits,
            "parts_us_per_record": {k: round(v / n * 1e6, 3) for k, v in sorted(probe.seconds.items())},
            "calls": dict(probe.calls)}
        if mode == "upsert":
            text = io.StringIO()
            stats = pstats.Stats(profiler, stream=text)
            stats.sort_stats("tottime").print_stats(top)
            result["cprofile_tottime"] = text.getvalue().splitlines()[:top + 12]
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(top)
            result["cprofile_cumulative"] = text.getvalue().splitlines()[:top + 12]
        out[mode] = result
    out["upsert_over_append_us"] = round(out["upsert"]["total_us_per_record"] / out["append"]["total_us_per_record"], 3)
    return out


# --- main ------------------------------------------------------------------------------------


def _run_summary(run: dict[str, Any]) -> str:
    per_core = run["records_per_s_per_core_excl_startup"]
    return (f"{run['records_per_s_excl_startup']:,} rec/s excl. start-up ({per_core:,} per core), "
            f"{run['records_per_cpu_s_excl_startup']:,} per CPU-s, CPU {run['cpu_s_per_million']} s/M, "
            f"peak RSS {run['peak_rss_largest_process_mib']} MiB, {run['commits']} commits, rows {run['rows']:,}, "
            f"audit {'OK' if run['audit_exit'] == 0 else 'FAILED: ' + run['audit']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.upsert", description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=1_000_000, help="keyed changes (the issue: 5,000,000)")
    parser.add_argument("--keys", type=int, default=200_000, help="distinct keys (the issue: 1,000,000)")
    parser.add_argument("--tombstones", type=float, default=0.2, help="share of changes that delete their key")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--pairs", type=int, default=1, help="append/upsert pairs, alternating which runs first")
    parser.add_argument("--commit-interval", type=float, default=10.0)
    parser.add_argument("--maintenance-seconds", type=float, default=180.0, help="0 skips the phase")
    parser.add_argument("--rate", type=float, default=5000.0, help="changes/s fed in the maintenance phase")
    parser.add_argument("--max-delete-files", type=int, default=20)
    parser.add_argument("--check-interval", type=float, default=5.0, help="maintenance.check_interval_seconds")
    parser.add_argument("--maintenance-commit-interval", type=float, default=2.0)
    parser.add_argument("--profile", action=argparse.BooleanOptionalAction, default=None,
                        help="profile the upsert path in process (default: only when the ratio misses 0.7)")
    parser.add_argument("--duckdb-deadline", type=float, default=90.0,
                        help="seconds before a DuckDB query is interrupted (its equality deletes can be slow)")
    parser.add_argument("--skip-throughput", action="store_true", help="produce, then only the other phases")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, configs)")
    args = parser.parse_args(argv)
    logs.configure("warning")
    stamp = datetime.now(UTC)
    out = args.out or Path(__file__).parent / "results" / f"upsert-{stamp:%Y-%m-%dT%H%M%S}.json"
    work = Path(tempfile.mkdtemp(prefix="tabletopic-bench-upsert-"))
    results: dict[str, Any] = {
        "started": stamp.isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench.upsert", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine(), "code_at_start": code_version(),
        "settings": {"changes": args.changes, "keys": args.keys, "tombstones": args.tombstones,
                     "workers": args.workers, "commit_interval_s": args.commit_interval,
                     "partitions": dataset.PARTITIONS, "catalog": "pyiceberg SQLite catalog, local warehouse"},
    }
    kafka = LocalKafka(work / "kafka").start()
    try:
        bench = Bench(work, kafka, None, None, None, args.commit_interval, None, {"warehouse": str(work / "warehouse")})
        changes = Changes(args.keys, args.tombstones)
        print(f"producing {args.changes:,} changes to {args.keys:,} keys", file=sys.stderr, flush=True)
        produced = produce_changes(kafka.bootstrap, "bench-upsert", changes, args.changes)
        results["dataset"] = {"topic": produced.topic, "records": produced.records,
                              "tombstones": changes.tombstones_produced,
                              "keys_touched": len(changes.last_is_upsert), "live_keys": changes.live_keys,
                              "value_bytes_per_upsert": round(produced.value_bytes / max(
                                  1, produced.records - changes.tombstones_produced), 1),
                              "produce_s": round(produced.seconds, 1)}
        expected_rows = changes.live_keys
        upsert_table = None
        if not args.skip_throughput:
            runs: dict[str, list[dict[str, Any]]] = {"append": [], "upsert": []}
            for pair in range(args.pairs):  # append, upsert, then upsert, append: neither always runs first
                for mode in ("append", "upsert") if pair % 2 == 0 else ("upsert", "append"):
                    print(f"tabletopic run into an {mode} table, {args.workers} worker(s)", file=sys.stderr,
                          flush=True)
                    runs[mode].append(throughput(with_table(bench, mode == "upsert"), produced, args.workers))
                    print(f"  {_run_summary(runs[mode][-1])}", file=sys.stderr, flush=True)
            results["runs"] = runs

            def median(mode: str, figure: str) -> float:
                return statistics.median(r[figure] for r in runs[mode])

            per_core, per_cpu = "records_per_s_per_core_excl_startup", "records_per_cpu_s_excl_startup"
            ratio = median("upsert", per_core) / median("append", per_core)
            cpu_ratio = median("upsert", per_cpu) / median("append", per_cpu)
            results["ratio"] = {"records_per_s_per_core": round(ratio, 3), "records_per_cpu_s": round(cpu_ratio, 3),
                                "per_pair": [round(u[per_core] / a[per_core], 3)
                                             for a, u in zip(runs["append"], runs["upsert"], strict=True)],
                                "target": RATIO_TARGET, "met": ratio >= RATIO_TARGET}
            upsert_table = runs["upsert"][-1]["table"]
            results["upsert_rows_vs_model"] = {"rows_summary": runs["upsert"][-1]["rows"], "model": expected_rows}
            print(f"upsert/append per core: {ratio:.3f} (CPU: {cpu_ratio:.3f})", file=sys.stderr, flush=True)
        if upsert_table is not None:
            catalog = bench.open()
            print("queries before compaction", file=sys.stderr, flush=True)
            before = query_times(catalog, upsert_table, args.duckdb_deadline)
            config = bench.config("compact", produced.topic, upsert_table, "json", 1, args.commit_interval)
            print("tabletopic compact", file=sys.stderr, flush=True)
            compaction = compact_cli(config, upsert_table)
            print(f"  {compaction}", file=sys.stderr, flush=True)
            print("queries after compaction", file=sys.stderr, flush=True)
            after = query_times(catalog, upsert_table, args.duckdb_deadline)
            results["queries"] = {"expected_rows": expected_rows, "before": before, "compact": compaction,
                                  "after": after}
            print(json.dumps(results["queries"], indent=1), file=sys.stderr, flush=True)
        if args.maintenance_seconds > 0:
            print(f"maintenance: {args.rate:,.0f} changes/s for {args.maintenance_seconds:.0f} s", file=sys.stderr,
                  flush=True)
            results["maintenance"] = bounded_deletes(
                bench, Changes(args.keys, args.tombstones, seed=dataset.SEED + 1), args.rate, args.maintenance_seconds,
                args.max_delete_files, args.check_interval, args.maintenance_commit_interval)
        missed = "ratio" in results and not results["ratio"]["met"]
        if args.profile or (args.profile is None and missed):
            print("profile: ingest + flush in process", file=sys.stderr, flush=True)
            results["profile"] = profile_paths(bench, produced)
        results["code_at_end"] = code_version()
    finally:
        kafka.stop()
        if args.keep:
            print(f"work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(json.dumps({k: v for k, v in results.items() if k not in ("profile", "machine")}, indent=1, default=str))
    if "profile" in results:
        profile = cast(dict[str, Any], results["profile"])
        for mode in ("append", "upsert"):
            print(mode, json.dumps({k: v for k, v in profile[mode].items() if not k.startswith("cprofile")}))
        print("\n".join(profile["upsert"]["cprofile_tottime"]))
    print(f"\nresults: {out} ({CORES} cores)")
    runs_ok = all(r["audit_exit"] == 0 for runs in results.get("runs", {}).values() for r in runs)
    return 0 if runs_ok else 1


if __name__ == "__main__":
    sys.exit(main())
