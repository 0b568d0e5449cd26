"""The key audit of an upsert table against a real broker: a table built by hand as the topic's latest value
per key passes; a table missing a key, holding a stale value, a deleted key or a key twice fails, each
counted on its own."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow as pa
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.types import IntegerType, LongType, NestedField, StringType

from tabletopic.commit.committer import write_data_files
from tabletopic.commit.offsets import encode_offsets, offsets_key
from tabletopic.commit.upsert_files import commit_upsert, write_equality_deletes
from tabletopic.core.upsert_mode import UpsertMode
from tests.support import catalog_of, produce, writer_config

PARTITIONS = 2
GROUP = "tests"
SCHEMA = Schema(
    NestedField(1, "id", LongType(), required=True),
    NestedField(2, "v", LongType(), required=False),
    NestedField(3, "_kafka_topic", StringType(), required=False),
    NestedField(4, "_kafka_partition", IntegerType(), required=False),
    NestedField(5, "_kafka_offset", LongType(), required=False),
    identifier_field_ids=[1],
)


def history(keys: int, changes: int) -> list[tuple[int, int | None, int | None]]:
    """(partition, id or None for a keyless record, value or None for a tombstone): each key in one partition,
    updated several times, every fifth change a tombstone."""
    records: list[tuple[int, int | None, int | None]] = []
    for n in range(changes):
        key = (n * 7) % keys
        records.append((key % PARTITIONS, key, None if n % 5 == 4 else n))
    records.append((0, None, 999))  # no key: the writer dead-letters it, the audit skips it
    return records


def upsert(table: Table, topic: str, records: list[tuple[int, int, int, int | None]],
           offsets: dict[tuple[str, int], int] | None) -> int:
    """One commit as the writer makes it: the last record per key wins; every key touched is deleted first."""
    last: dict[int, tuple[int, int, int | None]] = {}
    for partition, offset, key, value in sorted(records):
        last[key] = (partition, offset, value)
    live = [(key, p, o, v) for key, (p, o, v) in sorted(last.items()) if v is not None]
    rows = pa.table({"id": [k for k, _, _, _ in live], "v": [v for _, _, _, v in live],
                     "_kafka_topic": [topic] * len(live), "_kafka_partition": [p for _, p, _, _ in live],
                     "_kafka_offset": [o for _, _, o, _ in live]}, schema=table.schema().as_arrow())
    data = write_data_files(table, rows) if live else []
    deletes = write_equality_deletes(table, pa.table({"id": pa.array(sorted(last), pa.int64())}), [1])
    properties = {offsets_key(GROUP): encode_offsets(offsets)} if offsets is not None else {}
    return commit_upsert(table, data, deletes, properties)


def add_rows(table: Table, topic: str, rows: list[tuple[int, int, int]]) -> None:
    """Rows (id, partition, offset) added with no delete: as a writer that forgot its deletes would."""
    arrow = pa.table({"id": [r[0] for r in rows], "v": [0] * len(rows), "_kafka_topic": [topic] * len(rows),
                      "_kafka_partition": [r[1] for r in rows], "_kafka_offset": [r[2] for r in rows]},
                     schema=table.schema().as_arrow())
    commit_upsert(table, write_data_files(table, arrow), [], {})


def audit(config, topic: str, table: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tabletopic", "audit", "--config", str(config), "--topic", topic, "--table", table],
        capture_output=True, text=True, timeout=300)


def counts(run: subprocess.CompletedProcess[str]) -> list[int]:
    """live keys, deleted, rows, missing, stale, resurrected, doubled."""
    lines = run.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.strip().startswith("live keys"))
    return [int(x) for x in lines[header + 1].split()[:7]]


def test_the_key_audit_passes_on_the_topics_latest_value_per_key_and_counts_each_break(kafka, new_topic,
                                                                                        tmp_path):
    topic = new_topic(PARTITIONS)
    name = "audit.keys"
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, name, tmp_path / "wh")
    records = history(keys=40, changes=300)
    produce(kafka.bootstrap, topic, [
        (p, None if key is None else json.dumps({"id": key}).encode(),
         None if value is None else json.dumps({"id": key, "v": value}).encode(), None)
        for p, key, value in records])
    # Offsets as the broker gave them: per partition, in production order.
    placed: list[tuple[int, int, int, int | None]] = []
    next_offset = dict.fromkeys(range(PARTITIONS), 0)
    for p, key, value in records:
        if key is not None:
            placed.append((p, next_offset[p], key, value))
        next_offset[p] += 1
    catalog = catalog_of(config)
    catalog.create_namespace_if_not_exists("audit")
    table = catalog.create_table(name, schema=SCHEMA, properties={
        "format-version": "2", **UpsertMode("kafka-key", "json").properties()})
    # Two commits, the first up to about half of each partition.
    half = {p: next_offset[p] // 2 for p in range(PARTITIONS)}
    upsert(table, topic, [r for r in placed if r[1] < half[r[0]]], {(topic, p): n for p, n in half.items()})
    upsert(catalog.load_table(name), topic, [r for r in placed if r[1] >= half[r[0]]],
           {(topic, p): n for p, n in next_offset.items()})
    good = catalog.load_table(name).current_snapshot().snapshot_id

    last = {}
    for p, o, key, value in placed:
        last[key] = (p, o, value)
    live = sorted(k for k, (_, _, v) in last.items() if v is not None)
    deleted = sorted(k for k, (_, _, v) in last.items() if v is None)
    assert live and deleted

    passed = audit(config, topic, name)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert counts(passed) == [len(live), len(deleted), len(live), 0, 0, 0, 0], passed.stdout
    assert "audit: OK" in passed.stdout and "1 without an applicable key skipped" in passed.stdout

    older = next(k for k in live if sum(1 for r in placed if r[2] == k and r[3] is not None) > 1)
    p, o, _ = last[older]
    old_offset = max(r[1] for r in placed if r[2] == older and r[1] < o and r[3] is not None)
    breaks = {
        "missing": lambda t: commit_upsert(t, [], write_equality_deletes(
            t, pa.table({"id": pa.array([live[0]], pa.int64())}), [1]), {}),
        "stale": lambda t: upsert(t, topic, [(p, old_offset, older, 1)], None),
        "resurrected": lambda t: add_rows(t, topic, [(deleted[0], *last[deleted[0]][:2])]),
        "doubled": lambda t: add_rows(t, topic, [(live[-1], *last[live[-1]][:2])]),
    }
    for position, (kind, apply) in enumerate(breaks.items()):
        apply(catalog.load_table(name))
        failed = audit(config, topic, name)
        assert failed.returncode == 1, failed.stdout + failed.stderr
        expected = [0, 0, 0, 0]
        expected[position] = 1
        assert counts(failed)[3:] == expected, (kind, failed.stdout)
        assert f"  {kind} e.g. id=" in failed.stdout and "audit: FAILED" in failed.stdout, failed.stdout
        catalog.load_table(name).manage_snapshots().set_current_snapshot(good).commit()
    assert audit(config, topic, name).returncode == 0
