"""Every engine reads tabletopic's tables: all rows and values, time travel, metadata columns, pruning."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest

from tests.engines import dataset
from tests.engines.conftest import Lake
from tests.engines.engines import DuckDBEngine, Engine, PyIcebergEngine, SparkEngine, TrinoEngine

# py4j (pyspark's bridge to the JVM) leaves its gateway sockets for the garbage collector to close.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

ENGINES = ["pyiceberg", "duckdb", "spark", "trino"]
MAP_COLUMNS = {"attrs", "_kafka_headers"}


@pytest.fixture(scope="module", params=ENGINES)
def engine(request: pytest.FixtureRequest, lake: Lake) -> Iterator[Engine]:
    if request.param == "trino":
        adapter: Any = TrinoEngine(request.getfixturevalue("trino_server"))
    else:
        factories = {"pyiceberg": PyIcebergEngine, "duckdb": DuckDBEngine, "spark": SparkEngine}
        adapter = factories[request.param](lake.catalog)
    yield adapter
    close = getattr(adapter, "close", None)
    if close is not None:
        close()


def as_map(value: Any) -> dict[Any, Any] | None:
    if value is None:
        return None
    return dict(value) if not isinstance(value, dict) else value


def checksum(values: list[Any]) -> str:
    return hashlib.sha256(repr(values).encode()).hexdigest()[:16]


TABLES = [
    (dataset.JSON_TABLE, dataset.expected_json_row),
    (dataset.AVRO_TABLE, dataset.expected_avro_row),
]


@pytest.mark.parametrize(("table", "expected_row"), TABLES, ids=["json", "avro"])
def test_every_row_and_value_reads_back(engine: Engine, lake: Lake, table, expected_row):
    columns = list(expected_row(0))
    rows = engine.rows(table, columns)
    assert len(rows) == lake.records
    got = {row["id"]: {c: (as_map(v) if c in MAP_COLUMNS else v) for c, v in row.items()} for row in rows}
    want = {i: {c: (as_map(v) if c in MAP_COLUMNS else v) for c, v in expected_row(i).items()}
            for i in range(lake.records)}
    assert sorted(got) == sorted(want)
    # Per-column checksums first, so a failure names the column; then the rows themselves.
    mismatched = [c for c in columns
                  if checksum([got[i][c] for i in sorted(got)]) != checksum([want[i][c] for i in sorted(want)])]
    assert mismatched == [], {c: (got[0][c], want[0][c]) for c in mismatched}
    assert got == want


@pytest.mark.parametrize("table", [dataset.JSON_TABLE, dataset.AVRO_TABLE], ids=["json", "avro"])
def test_time_travel_to_the_first_run(engine: Engine, lake: Lake, table):
    assert engine.count(table) == lake.records
    assert engine.count(table, lake.first_snapshot[table]) == lake.first_count


@pytest.mark.parametrize("table", [dataset.JSON_TABLE, dataset.AVRO_TABLE], ids=["json", "avro"])
def test_kafka_metadata_columns_are_queryable(engine: Engine, lake: Lake, table):
    assert engine.count_by(table, "_kafka_partition") == lake.partition_counts[table]
    rows = engine.rows(table, ["_kafka_offset", "_kafka_key", "_kafka_headers", "_kafka_timestamp"])
    assert all(r["_kafka_timestamp"] > 0 and r["_kafka_key"] for r in rows)
    assert {tuple(sorted(as_map(r["_kafka_headers"]).items())) for r in rows} == {
        (("run", b"0"),), (("run", b"1"),)}


def test_partition_pruning_reads_less(engine: Engine, lake: Lake):
    filtered, everything = engine.scanned(dataset.JSON_TABLE, "region", "eu")
    assert 0 < filtered < everything
