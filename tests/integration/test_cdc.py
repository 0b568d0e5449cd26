"""The real CDC pipeline end to end: PostgreSQL -> Debezium (Kafka Connect, JsonConverter) -> Kafka -> tabletopic
(`envelope: debezium`) -> an upsert table. After a snapshot, inserts, updates, deletes and a column added on the
source, the table equals `SELECT` on the source row for row, the per-key audit passes, and after compaction a
plain pyiceberg scan (no deletes left to apply) gives the same rows."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
