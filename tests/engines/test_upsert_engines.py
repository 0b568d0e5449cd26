"""Upsert tables (merge-on-read: equality deletes in the same snapshot as the new rows) read by every engine.

A table bucketed by its key, written by `tabletopic run` in several commits with updates, tombstones and a
key deleted then inserted again, holds what a pure model of the topic says: in Spark, Trino, DuckDB and
tabletopic's own reader before compaction, and in pyiceberg too after `tabletopic compact`. Then Spark's
own `rewrite_data_files` races a live upsert writer: its files keep the data sequence number of the
snapshot it started from, so the deletes committed meanwhile still apply, and the per-key audit passes.

The tests before compaction run first (file order) and each checks that the deletes are still live.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pyiceberg.manifest import ManifestContent, ManifestEntryStatus
from pyiceberg.table import Table

from tabletopic.catalog import reader
from tabletopic.local.kafka import LocalKafka
from tabletopic.local.rest_catalog import LocalRestCatalog
from tabletopic.local.topics import create_topic
from tests.engines.dataset import canonical
from tests.engines.engines import DuckDBEngine, Engine, SparkEngine, TrinoEngine
from tests.support import Writer, audit_cli, catalog_of, log_end, produce, wait_committed, writer_config

# py4j (pyspark's bridge to the JVM) leaves its gateway sockets for the garbage collector to close.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

PARTITIONS = 4
KEYS = 300
UPSERT = {"mode": "upsert", "partition_by": ["bucket(4, id)"]}
VALUE_COLUMNS = ["id", "name", "qty", "price", "active", "tags", "address"]
COLUMNS = [*VALUE_COLUMNS, "_kafka_partition", "_kafka_offset", "_kafka_key"]
# Outside the random keys: deleted in one commit and back in a later one, or in the same one.
BACK_LATER, BACK_AT_ONCE = KEYS, KEYS + 1

Record = tuple[int, bytes, bytes | None, None]  # (partition, key, value or a tombstone, headers)


def value(n: int, key: int) -> dict[str, Any]:
    """Change n of `key`: every JSON type the mapping has, a null now and then (never in the first record,
    which decides the column types)."""
    return {
        "id": key,
        "name": None if n % 5 == 3 else f"name-{n}",
        "qty": n,
        "price": n / 4,
        "active": n % 2 == 0,
        "tags": [f"t{n % 3}", f"u{n % 4}"][: 1 + n % 2],
        "address": {"city": f"city-{n % 7}", "zip": 1000 + n % 13},
    }


def change(n: int, key: int, deleted: bool) -> Record:
    """On the key's own partition, as a keyed producer would put it: one key, one partition, in order."""
    raw_value = None if deleted else json.dumps(value(n, key)).encode()
    return key % PARTITIONS, json.dumps({"id": key}).encode(), raw_value, None


def history(seed: int, first_n: int, changes: int) -> list[Record]:
    rng = random.Random(seed)
    return [change(n, rng.randrange(KEYS), rng.random() < 0.2) for n in range(first_n, first_n + changes)]


def model(records: list[Record]) -> dict[int, dict[str, Any]]:
    """Key -> its row: the latest value, the partition and offset of the record that won, its Kafka key.
    A tombstone deletes the key. The topic is fresh, so a record's offset is its index in its partition."""
    state: dict[int, dict[str, Any]] = {}
    next_offset = dict.fromkeys(range(PARTITIONS), 0)
    for partition, raw_key, raw_value, _ in records:
        key = json.loads(raw_key)["id"]
        if raw_value is None:
            state.pop(key, None)
        else:
            state[key] = {**json.loads(raw_value), "_kafka_partition": partition,
                          "_kafka_offset": next_offset[partition], "_kafka_key": raw_key}
        next_offset[partition] += 1
    return state


def assert_state(rows: list[dict[str, Any]], expected: dict[int, dict[str, Any]], who: str) -> None:
    """`rows` (any order) are exactly `expected`: each key once, every column value-exact."""
    got: dict[int, dict[str, Any]] = {}
    twice = []
    for row in rows:
        if row["id"] in got:
            twice.append(row["id"])
        got[row["id"]] = {c: canonical(v) for c, v in row.items()}
    columns = list(rows[0]) if rows else list(next(iter(expected.values())))
    want = {k: {c: canonical(v[c]) for c in columns} for k, v in expected.items()}
    missing = sorted(set(want) - set(got))
    deleted_but_present = sorted(set(got) - set(want))
    stale = sorted(k for k in set(got) & set(want) if got[k] != want[k])
    example = {k: (got[k], want[k]) for k in stale[:2]}
    assert (twice, missing, deleted_but_present, stale) == ([], [], [], []), (
        f"{who}: keys twice {twice[:10]}, missing {missing[:10]}, deleted but present {deleted_but_present[:10]}, "
        f"stale {stale[:10]} of {len(want)} keys; e.g. (read, expected) {example}")


def live_files(table: Table, content: ManifestContent) -> int:
    snapshot = table.current_snapshot()
    assert snapshot is not None
    return sum(len(m.fetch_manifest_entry(table.io, discard_deleted=True))
               for m in snapshot.manifests(table.io) if m.content == content)


def compact_cli(config: Path, table: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tabletopic", "compact", "--config", str(config), "--table", table],
                          capture_output=True, text=True, timeout=300)


def lake_config(path: Path, kafka: LocalKafka, rest: LocalRestCatalog, topic: str, table: str,
                **overrides: Any) -> Path:
    return writer_config(path, kafka.bootstrap, topic, table, "", catalog={"name": "lake", **rest.client_properties()},
                         table_settings=UPSERT, **overrides)


# --- 1. Every engine reads an upsert table's equality deletes, and every reader agrees after compaction ---

@dataclass
class UpsertTable:
    name: str
    topic: str
    config: Path
    expected: dict[int, dict[str, Any]]


@pytest.fixture(scope="module")
def upsert_table(kafka: LocalKafka, rest_catalog: LocalRestCatalog,
                 tmp_path_factory: pytest.TempPathFactory) -> UpsertTable:
    table, topic = "engines.upsert_state", "engines-upsert-state"
    create_topic(kafka.bootstrap, topic, PARTITIONS)
    config = lake_config(tmp_path_factory.mktemp("upsert") / "c.yaml", kafka, rest_catalog, topic, table)
    # Three rounds, each committed before the next is produced: later rounds update and delete keys whose
    # rows are in an earlier commit's data files, which only the equality deletes remove.
    first = [*history(1, 0, 2000), change(2000, BACK_LATER, False), change(2001, BACK_AT_ONCE, False)]
    second = [*history(2, 3000, 1500), change(4500, BACK_LATER, True), change(4501, BACK_AT_ONCE, True),
              change(4502, BACK_AT_ONCE, False)]
    third = [*history(3, 6000, 1000), change(7000, BACK_LATER, False)]
    records: list[Record] = []
    writer = Writer(config)
    iceberg = catalog_of(config)
    try:
        for round_ in (first, second, third):
            produce(kafka.bootstrap, topic, round_)
            records += round_
            wait_committed(iceberg, table, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), timeout=180,
                           writer=writer)
        assert writer.stop() == 0, writer.log()
    finally:
        writer.kill()
    expected = model(records)
    assert expected[BACK_LATER]["qty"] == 7000 and expected[BACK_AT_ONCE]["qty"] == 4502
    loaded = iceberg.load_table(table)
    assert live_files(loaded, ManifestContent.DELETES) > 0, "the later rounds wrote equality deletes"
    return UpsertTable(table, topic, config, expected)


@pytest.fixture(scope="module")
def spark(rest_catalog: LocalRestCatalog) -> Iterator[SparkEngine]:
    engine = SparkEngine(rest_catalog)
    yield engine
    engine.close()


def fresh_rows(engine: Engine, table: str, columns: list[str]) -> list[dict[str, Any]]:
    """The rows as of the table's current snapshot: Spark's catalog caches a loaded table (expiring only
    after 30 s without use), so it is refreshed first."""
    if isinstance(engine, SparkEngine):
        engine.session.sql(f"REFRESH TABLE lake.{table}")
    return engine.rows(table, columns)


class Engines:
    """Spark and Trino opened once per module, on first use (Trino's server starts only if a Trino test runs);
    DuckDB anew each time, so that no attached catalog state outlives a compaction."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self.request = request
        self.opened: dict[str, Any] = {}

    def __call__(self, name: str) -> Engine:
        if name == "duckdb":
            self.opened.pop(name, None)
        if name not in self.opened:
            if name == "spark":
                self.opened[name] = self.request.getfixturevalue("spark")
            elif name == "trino":
                self.opened[name] = TrinoEngine(self.request.getfixturevalue("trino_server"))
            else:
                self.opened[name] = DuckDBEngine(self.request.getfixturevalue("rest_catalog"))
        engine: Engine = self.opened[name]
        return engine

    def close(self) -> None:
        for name, engine in self.opened.items():
            if name != "spark":  # the `spark` fixture closes its own
                getattr(engine, "close", lambda: None)()


@pytest.fixture(scope="module")
def engines(request: pytest.FixtureRequest) -> Iterator[Engines]:
    opened = Engines(request)
    yield opened
    opened.close()


ENGINES = ["spark", "trino", "duckdb"]
# Every engine reads the deletes before compaction. This held only once tabletopic wrote `equality_ids`
# (manifest field 135) as the spec's list<int>: pyiceberg 0.12's schema says list<long>
# (apache/iceberg-python#3840), and Iceberg Java (Spark's runtime, Trino's connector) failed to load such
# delete files (ClassCastException: Long cannot be cast to Integer). catalog/pyiceberg_private.py fixes it.
BEFORE_COMPACTION = ENGINES


@pytest.mark.parametrize("name", BEFORE_COMPACTION)
def test_the_engine_reads_the_equality_deletes(upsert_table: UpsertTable, engines: Engines, name: str) -> None:
    loaded = catalog_of(upsert_table.config).load_table(upsert_table.name)
    assert live_files(loaded, ManifestContent.DELETES) > 0, "the table has its deletes (not compacted yet)"
    assert_state(fresh_rows(engines(name), upsert_table.name, COLUMNS), upsert_table.expected, name)


def test_the_delete_aware_reader_reads_the_model(upsert_table: UpsertTable) -> None:
    loaded = catalog_of(upsert_table.config).load_table(upsert_table.name)
    assert live_files(loaded, ManifestContent.DELETES) > 0
    assert_state(reader.read(loaded, columns=COLUMNS).to_pylist(), upsert_table.expected, "reader.read")


def compact_every_delete(config: Path, name: str) -> None:
    """`tabletopic compact` exits 0 and leaves no live delete file."""
    compaction = compact_cli(config, name)
    assert compaction.returncode == 0, compaction.stdout + compaction.stderr
    after = catalog_of(config).load_table(name)
    assert live_files(after, ManifestContent.DELETES) == 0, "compaction applied every delete"


@pytest.fixture(scope="module")
def compacted(upsert_table: UpsertTable) -> UpsertTable:
    compact_every_delete(upsert_table.config, upsert_table.name)
    return upsert_table


def test_after_compaction_a_plain_pyiceberg_scan_reads_the_model(compacted: UpsertTable) -> None:
    loaded = catalog_of(compacted.config).load_table(compacted.name)
    plain = loaded.scan(selected_fields=tuple(COLUMNS)).to_arrow().to_pylist()
    assert_state(plain, compacted.expected, "pyiceberg scan")


@pytest.mark.parametrize("name", ENGINES)
def test_after_compaction_the_engine_reads_the_model(compacted: UpsertTable, engines: Engines, name: str) -> None:
    assert_state(fresh_rows(engines(name), compacted.name, COLUMNS), compacted.expected, f"{name} after compaction")


# --- 2. Spark's rewrite_data_files races a live upsert writer ---

RACE_LEAST_CHANGES = 24_000
RACE_BATCH = 800
RACE_DEADLINE_S = 300


def feed_until(bootstrap: str, topic: str, stop: threading.Event,
               pause_s: float) -> tuple[threading.Thread, list[Record]]:
    """Produces batches of changes, a pause between them, until `stop` is set and at least
    RACE_LEAST_CHANGES are out; the list holds every record produced, in order."""
    produced: list[Record] = []

    def run() -> None:
        rng = random.Random(4)
        while len(produced) < RACE_LEAST_CHANGES or not stop.is_set():
            first = len(produced)
            batch = [change(n, rng.randrange(KEYS), rng.random() < 0.2) for n in range(first, first + RACE_BATCH)]
            produce(bootstrap, topic, batch)
            produced.extend(batch)
            time.sleep(pause_s)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, produced


def raced_rewrites(table: Table) -> list[int]:
    """The replace snapshots whose new files carry a data sequence number below that of a snapshot committed
    before them that added deletes: the rewrite started, an upsert commit landed, then the rewrite committed."""
    snapshots = table.snapshots()
    adding_deletes = [s.sequence_number for s in snapshots if s.summary is not None
                      and int(s.summary.additional_properties.get("added-delete-files", 0)) > 0]
    raced = []
    for snapshot in snapshots:
        if snapshot.summary is None or snapshot.summary.operation.value != "replace":
            continue
        added = [entry.sequence_number for manifest in snapshot.manifests(table.io)
                 if manifest.content == ManifestContent.DATA and manifest.added_snapshot_id == snapshot.snapshot_id
                 for entry in manifest.fetch_manifest_entry(table.io)
                 if entry.status == ManifestEntryStatus.ADDED]
        started = min((s for s in added if s is not None), default=None)
        if started is not None and any(started < seq < snapshot.sequence_number  # type: ignore[operator]
                                       for seq in adding_deletes):
            raced.append(snapshot.snapshot_id)
    return raced


def test_spark_rewrite_racing_live_upserts_loses_no_update_and_resurrects_no_key(
        kafka: LocalKafka, rest_catalog: LocalRestCatalog, spark: SparkEngine, tmp_path: Path) -> None:
    table, topic = "engines.upsert_spark_compacted", "engines-upsert-spark-compacted"
    create_topic(kafka.bootstrap, topic, PARTITIONS)
    config = lake_config(tmp_path / "c.yaml", kafka, rest_catalog, topic, table, commit={"interval_seconds": 0.5})
    stop_feeding = threading.Event()
    producer, records = feed_until(kafka.bootstrap, topic, stop_feeding, 0.5)
    writer = Writer(config)
    iceberg = catalog_of(config)
    rewritten: list[int] = []
    raced: list[int] = []
    try:
        writer.wait_for("commit.done", timeout=120)
        # Rewrite until one rewrite has raced an upsert commit (most do: the writer commits every 0.5 s), the
        # producer feeding the writer until then, however slow the machine makes Spark.
        deadline = time.monotonic() + RACE_DEADLINE_S
        while time.monotonic() < deadline and not (raced and len(rewritten) >= 2):
            spark.session.sql(f"REFRESH TABLE lake.{table}")
            result = spark.session.sql(
                f"CALL lake.system.rewrite_data_files(table => '{table}', options => map('min-input-files', '2'))"
            ).collect()
            rewritten.append(result[0]["rewritten_data_files_count"])
            raced = raced_rewrites(iceberg.load_table(table))
        stop_feeding.set()
        producer.join()
        wait_committed(iceberg, table, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), timeout=300,
                       writer=writer)
        assert writer.stop() == 0, writer.log()
    finally:
        stop_feeding.set()
        writer.kill()
        producer.join()
    assert sum(rewritten) > 0, rewritten
    assert raced, "no Spark rewrite committed after an upsert commit that began after it: the race never happened"
    expected = model(records)
    loaded = iceberg.load_table(table)
    assert_state(fresh_rows(spark, table, COLUMNS), expected, "spark")
    assert_state(reader.read(loaded, columns=COLUMNS).to_pylist(), expected, "reader.read")
    audit = audit_cli(config, topic, table)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert "every key holds its latest value" in audit.stdout
