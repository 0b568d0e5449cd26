"""The real CDC pipeline end to end: PostgreSQL -> Debezium (Kafka Connect, JsonConverter) -> Kafka -> tabletopic
(`envelope: debezium`) -> an upsert table. After a snapshot, inserts, updates, deletes and a column added on the
source, the table equals `SELECT` on the source row for row, the per-key audit passes, and after compaction a
plain pyiceberg scan (no deletes left to apply) gives the same rows."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
from pyiceberg.manifest import ManifestContent
from pyiceberg.table import Table

from tabletopic.catalog import reader
from tabletopic.local.connect import LocalConnect
from tabletopic.local.kafka import LocalKafka
from tabletopic.local.postgres import LocalPostgres
from tests.cdc_stack import read_records, start_cdc_connector
from tests.support import Writer, audit_cli, catalog_of, log_end, wait_committed, writer_config

COLUMNS = ["id", "name", "qty", "note"]
DDL = "CREATE TABLE {src} (id bigint PRIMARY KEY, name text NOT NULL, qty int)"
BEFORE_CONNECTOR = "INSERT INTO {src} VALUES (1, 'ada', 10), (2, 'bob', 20), (3, 'cy', 30), (4, 'dee', 40)"
# Each statement its own transaction, in this order: (the statement, how many records Debezium makes of it).
# The writer commits the first changes before the rest happen: the later updates and deletes then apply to a
# data file of an earlier commit, as equality deletes that the reader, the audit and compaction must honour.
FIRST_CHANGES = [
    ("INSERT INTO {src} VALUES (5, 'eve', 50), (6, 'fay', 60)", 2),
    ("UPDATE {src} SET qty = 21 WHERE id = 2", 1),
    ("UPDATE {src} SET qty = 22, name = 'bob b' WHERE id = 2", 1),  # the same key again, at once
]
LATER_CHANGES = [
    ("UPDATE {src} SET name = 'dee d' WHERE id = 4", 1),
    ("UPDATE {src} SET name = 'dee e', qty = 41 WHERE id = 4", 1),
    ("DELETE FROM {src} WHERE id IN (3, 6)", 4),  # a `d` and its tombstone each
    ("ALTER TABLE {src} ADD COLUMN note text", 0),
    ("UPDATE {src} SET note = 'first' WHERE id = 1", 1),
    ("UPDATE {src} SET note = 'fifth', qty = 55 WHERE id = 5", 1),
    ("INSERT INTO {src} VALUES (7, 'gus', 70, 'new')", 1),
    ("INSERT INTO {src} VALUES (3, 'cy again', 31, NULL)", 1),  # a deleted key comes back
]
SNAPSHOT_RECORDS = 4


def source_rows(postgres: LocalPostgres, src: str, columns: list[str]) -> list[dict[str, Any]]:
    """The source table's rows, ordered by id, as JSON: exact types, NULL as None."""
    out = postgres.psql(f"SELECT coalesce(json_agg(t ORDER BY t.id), '[]') FROM (SELECT {', '.join(columns)} "
                        f"FROM {src}) t")
    rows: list[dict[str, Any]] = json.loads(out)
    return rows


def compact_cli(config_path: Path, table: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tabletopic", "compact", "--config", str(config_path),
                           "--table", table], capture_output=True, text=True, timeout=300)


def test_a_postgres_table_through_debezium_equals_its_source(
    kafka: LocalKafka, postgres: LocalPostgres, debezium_connect: LocalConnect, spawn_writer: Callable[..., Writer],
    tmp_path: Path,
) -> None:
    run = uuid.uuid4().hex[:8]
    src = f"cdc_src_{run}"
    postgres.psql(f"{DDL.format(src=src)}; {BEFORE_CONNECTOR.format(src=src)};")
    connector = start_cdc_connector(debezium_connect, postgres, src, f"cdc-e2e-{run}", f"cdc_e2e_{run}",
                                    key_schemas=False, value_schemas=True)
    table = "cdc.src"
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, connector.topic, table, tmp_path / "wh",
                           table_settings={"envelope": "debezium"})
    catalog = catalog_of(config)
    try:
        first = apply_changes(postgres, src, FIRST_CHANGES, SNAPSHOT_RECORDS, kafka.bootstrap, debezium_connect,
                              connector.name, connector.topic)
        writer = spawn_writer(config)
        wait_committed(catalog, table, "tests", first, writer=writer)
        before_note = COLUMNS[:3]
        assert reader.read(catalog.load_table(table), columns=before_note).sort_by("id").to_pylist() == \
            source_rows(postgres, src, before_note)

        end = apply_changes(postgres, src, LATER_CHANGES, first[(connector.topic, 0)], kafka.bootstrap,
                            debezium_connect, connector.name, connector.topic)
        wait_committed(catalog, table, "tests", end, writer=writer)
        assert writer.stop() == 0
    finally:
        debezium_connect.delete_connector(connector.name)
    expected = source_rows(postgres, src, COLUMNS)
    assert [row["id"] for row in expected] == [1, 2, 3, 4, 5, 7]
    assert not catalog.table_exists(f"{table}__dlq"), "no change event may be a dead letter"
    assert _live_delete_manifests(catalog.load_table(table)), "the later changes are equality deletes"

    rows = reader.read(catalog.load_table(table), columns=COLUMNS).sort_by("id").to_pylist()
    assert rows == expected

    audit = audit_cli(config, connector.topic, table)
    assert audit.returncode == 0, audit.stdout + audit.stderr

    compaction = compact_cli(config, table)
    assert compaction.returncode == 0, compaction.stdout + compaction.stderr
    compacted = catalog.load_table(table)
    assert _live_delete_manifests(compacted) == []
    plain = compacted.scan(selected_fields=tuple(COLUMNS)).to_arrow().sort_by("id").to_pylist()
    assert plain == expected


def apply_changes(postgres: LocalPostgres, src: str, changes: list[tuple[str, int]], records_before: int,
                  bootstrap: str, connect: LocalConnect, connector: str, topic: str) -> dict[tuple[str, int], int]:
    """Run `changes` on the source, wait until all their records are in the topic; return its end."""
    for statement, _ in changes:
        postgres.psql(statement.format(src=src) + ";")
    records = records_before + sum(count for _, count in changes)
    read_records(bootstrap, topic, records, timeout_s=60, connect=connect, connector=connector)
    end = log_end(bootstrap, topic, 1)
    assert end == {(topic, 0): records}
    return end


def _live_delete_manifests(table: Table) -> list[str]:
    snapshot = table.current_snapshot()
    assert snapshot is not None
    return [m.manifest_path for m in snapshot.manifests(table.io)
            if m.content == ManifestContent.DELETES and (m.added_files_count or m.existing_files_count)]


def test_debezium_logical_types_become_typed_columns(
    kafka: LocalKafka, postgres: LocalPostgres, debezium_connect: LocalConnect, spawn_writer: Callable[..., Writer],
    tmp_path: Path,
) -> None:
    """Dates, timestamps with and without a zone, and decimals arrive as Connect logical types over numbers and
    strings: the table's columns are date, timestamp, timestamptz and the decimal's exact text, values equal
    the source's; a column added later by ALTER TABLE is typed the same way."""
    run = uuid.uuid4().hex[:8]
    src = f"cdc_types_{run}"
    postgres.psql(f"CREATE TABLE {src} (id bigint PRIMARY KEY, born date, seen timestamp(6), "
                  f"at timestamptz, price numeric(10, 2)); "
                  f"INSERT INTO {src} VALUES (1, '1999-12-31', '2026-01-02 03:04:05.123456', "
                  f"'2026-01-02 03:04:05.5+02', 12.50), (2, NULL, NULL, NULL, NULL);")
    connector = start_cdc_connector(debezium_connect, postgres, src, f"cdc-types-{run}", f"cdc_types_{run}")
    table = "cdc.types"
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, connector.topic, table, tmp_path / "wh",
                           table_settings={"envelope": "debezium", "cdc_columns": {"op": "_op"}})
    catalog = catalog_of(config)
    try:
        changes = [(f"UPDATE {src} SET price = 13.75, born = '2000-02-29' WHERE id = 2", 1),
                   (f"ALTER TABLE {src} ADD COLUMN due date", 0),
                   (f"UPDATE {src} SET due = '2026-12-01' WHERE id = 1", 1)]
        end = apply_changes(postgres, src, changes, 2, kafka.bootstrap, debezium_connect, connector.name,
                            connector.topic)
        writer = spawn_writer(config)
        wait_committed(catalog, table, "tests", end, writer=writer)
        assert writer.stop() == 0
    finally:
        debezium_connect.delete_connector(connector.name)
    loaded = catalog.load_table(table)
    schema = loaded.schema().as_arrow()
    assert schema.field("born").type == pa.date32()
    assert schema.field("due").type == pa.date32()
    assert schema.field("seen").type == pa.timestamp("us")
    assert schema.field("at").type == pa.timestamp("us", tz="UTC")
    assert pa.types.is_large_string(schema.field("price").type)
    if catalog.table_exists(f"{table}__dlq"):
        letters = catalog.load_table(f"{table}__dlq").scan().to_arrow().select(["reason", "message"])
        raise AssertionError(f"no change may be a dead letter: {letters.to_pylist()}")
    rows = reader.read(loaded, columns=["id", "born", "seen", "at", "price", "due", "_op"]).sort_by("id").to_pylist()
    assert rows == [
        {"id": 1, "born": dt.date(1999, 12, 31), "seen": dt.datetime(2026, 1, 2, 3, 4, 5, 123456),
         "at": dt.datetime(2026, 1, 2, 1, 4, 5, 500000, tzinfo=dt.UTC), "price": "12.50",
         "due": dt.date(2026, 12, 1), "_op": "u"},
        {"id": 2, "born": dt.date(2000, 2, 29), "seen": None, "at": None, "price": "13.75", "due": None, "_op": "u"},
    ]
