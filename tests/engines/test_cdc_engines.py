"""The real CDC pipeline read by every engine: PostgreSQL -> Debezium -> Kafka -> `tabletopic run` (`envelope:
debezium`) -> an upsert table in the REST catalog on S3.

The source gets the changes of tests/integration/test_cdc.py (inserts, a key updated twice, deletes, a column added,
a deleted key back), the later ones committed as equality deletes against an earlier commit's data files. Before
compaction Spark, Trino and DuckDB each read exactly `SELECT id, name, qty, note FROM src ORDER BY id`; after
`tabletopic compact` a plain pyiceberg scan and every engine do too, and the per-key audit passes.

The tests before compaction run first (file order) and each checks that the deletes are still live.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pyiceberg.manifest import ManifestContent

from tabletopic.local.connect import LocalConnect
from tabletopic.local.kafka import LocalKafka
from tabletopic.local.postgres import LocalPostgres
from tabletopic.local.rest_catalog import LocalRestCatalog
from tests.cdc_stack import start_cdc_connector
from tests.engines.dataset import canonical
from tests.engines.test_upsert_engines import (
    ENGINES,
    Engines,
    compact_every_delete,
    fresh_rows,
    live_files,
    spark,  # noqa: F401  (a module fixture, which Engines opens)
)
from tests.integration.test_cdc import (
    BEFORE_CONNECTOR,
    COLUMNS,
    DDL,
    FIRST_CHANGES,
    LATER_CHANGES,
    SNAPSHOT_RECORDS,
    apply_changes,
    source_rows,
)
from tests.support import Writer, audit_cli, catalog_of, wait_committed, writer_config

# py4j (pyspark's bridge to the JVM) leaves its gateway sockets for the garbage collector to close.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@dataclass
class CdcTable:
    name: str
    topic: str
    config: Path
    source: list[dict[str, Any]]  # SELECT id, name, qty, note FROM src ORDER BY id, once every change is in


@pytest.fixture(scope="module")
def cdc_table(kafka: LocalKafka, rest_catalog: LocalRestCatalog, postgres: LocalPostgres,
              debezium_connect: LocalConnect, tmp_path_factory: pytest.TempPathFactory) -> CdcTable:
    run = uuid.uuid4().hex[:8]
    src, table = f"cdc_engines_{run}", f"engines.cdc_{run}"
    postgres.psql(f"{DDL.format(src=src)}; {BEFORE_CONNECTOR.format(src=src)};")
    connector = start_cdc_connector(debezium_connect, postgres, src, f"cdc-engines-{run}", f"cdc_engines_{run}")
    config = writer_config(tmp_path_factory.mktemp("cdc") / "c.yaml", kafka.bootstrap, connector.topic, table, "",
                           catalog={"name": "lake", **rest_catalog.client_properties()},
                           table_settings={"envelope": "debezium"})
    iceberg = catalog_of(config)
    writer: Writer | None = None
    try:
        first = apply_changes(postgres, src, FIRST_CHANGES, SNAPSHOT_RECORDS, kafka.bootstrap, debezium_connect,
                              connector.name, connector.topic)
        writer = Writer(config)
        wait_committed(iceberg, table, "tests", first, writer=writer)
        end = apply_changes(postgres, src, LATER_CHANGES, first[(connector.topic, 0)], kafka.bootstrap,
                            debezium_connect, connector.name, connector.topic)
        wait_committed(iceberg, table, "tests", end, writer=writer)
        assert writer.stop() == 0, writer.log()
    finally:
        if writer is not None:
            writer.kill()
        debezium_connect.delete_connector(connector.name)
    source = source_rows(postgres, src, COLUMNS)
    assert [row["id"] for row in source] == [1, 2, 3, 4, 5, 7]
    assert not iceberg.table_exists(f"{table}__dlq"), "no change event may be a dead letter"
    loaded = iceberg.load_table(table)
    assert live_files(loaded, ManifestContent.DELETES) > 0, "the later changes are equality deletes"
    # The data files alone still hold the replaced and deleted rows: a reader that skips the deletes reads more.
    assert sum(loaded.inspect.data_files()["record_count"].to_pylist()) > len(source)
    return CdcTable(table, connector.topic, config, source)


@pytest.fixture(scope="module")
def open_engine(request: pytest.FixtureRequest) -> Iterator[Engines]:
    opened = Engines(request)
    yield opened
    opened.close()


def by_id(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda row: row["id"])


def canonical_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{c: canonical(v) for c, v in row.items()} for row in rows]


@pytest.mark.parametrize("name", ENGINES)
def test_before_compaction_the_engine_reads_the_source(cdc_table: CdcTable, open_engine: Engines, name: str) -> None:
    loaded = catalog_of(cdc_table.config).load_table(cdc_table.name)
    assert live_files(loaded, ManifestContent.DELETES) > 0, "the table has its deletes (not compacted yet)"
    assert by_id(fresh_rows(open_engine(name), cdc_table.name, COLUMNS)) == canonical_rows(cdc_table.source)


@pytest.fixture(scope="module")
def compacted(cdc_table: CdcTable) -> CdcTable:
    compact_every_delete(cdc_table.config, cdc_table.name)
    return cdc_table


def test_after_compaction_a_plain_pyiceberg_scan_reads_the_source(compacted: CdcTable) -> None:
    loaded = catalog_of(compacted.config).load_table(compacted.name)
    plain = loaded.scan(selected_fields=tuple(COLUMNS)).to_arrow().to_pylist()
    assert by_id(plain) == compacted.source


@pytest.mark.parametrize("name", ENGINES)
def test_after_compaction_the_engine_reads_the_source(compacted: CdcTable, open_engine: Engines, name: str) -> None:
    assert by_id(fresh_rows(open_engine(name), compacted.name, COLUMNS)) == canonical_rows(compacted.source)


def test_after_compaction_the_audit_passes(compacted: CdcTable) -> None:
    audit = audit_cli(compacted.config, compacted.topic, compacted.name)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert "every key holds its latest value" in audit.stdout
