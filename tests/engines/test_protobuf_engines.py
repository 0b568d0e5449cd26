"""A table tabletopic wrote from Protobuf values (issue 20) reads back value-exact in every engine.

The values are those of tests/integration/test_protobuf.py: a .proto importing another registered .proto, three
schema versions interleaved record by record, so the table holds a nested message from the import, an enum, a
Timestamp (timestamptz), a repeated string, a proto3 `optional`, and from the third version a repeated message,
a map and a nested message of its own; the records of the first two versions keep that list of structs null.
pyiceberg, DuckDB, Spark and Trino each read every row, and each value is what the producer sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from tabletopic.local.kafka import LocalKafka
from tabletopic.local.registry import LocalRegistry
from tabletopic.local.rest_catalog import LocalRestCatalog
from tabletopic.local.topics import create_topic
from tests.engines.dataset import canonical
from tests.engines.engines import DuckDBEngine, Engine, PyIcebergEngine, SparkEngine, TrinoEngine
from tests.protobuf_fixtures import assert_rows, expected, record_value, register_versions
from tests.support import Writer, audit_cli, catalog_of, log_end, produce, wait_committed, writer_config

# py4j (pyspark's bridge to the JVM) leaves its gateway sockets for the garbage collector to close.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

TABLE = "engines.protobuf_orders"
TOPIC = "engines-protobuf"
RECORDS = 6000
PARTITIONS = 3
COLUMNS = [*expected(0), "_kafka_key"]
MAP_COLUMNS = {"attrs"}


@pytest.fixture(scope="module")
def protobuf_table(kafka: LocalKafka, registry: LocalRegistry, rest_catalog: LocalRestCatalog,
                   tmp_path_factory: pytest.TempPathFactory) -> str:
    create_topic(kafka.bootstrap, TOPIC, PARTITIONS)
    client = SchemaRegistryClient({"url": registry.url})
    try:
        ids, classes = register_versions(client, TOPIC)
    finally:
        client.close()
    produce(kafka.bootstrap, TOPIC, ((i % PARTITIONS, str(i).encode(), record_value(ids, classes, i), None)
                                     for i in range(RECORDS)))
    config = writer_config(tmp_path_factory.mktemp("protobuf") / "c.yaml", kafka.bootstrap, TOPIC, TABLE, "",
                           catalog={"name": "lake", **rest_catalog.client_properties()},
                           schema_registry={"url": registry.url}, table_settings={"format": "protobuf"})
    writer = Writer(config)
    try:
        wait_committed(catalog_of(config), TABLE, "tests", log_end(kafka.bootstrap, TOPIC, PARTITIONS),
                       timeout=300, writer=writer)
        assert writer.stop() == 0, writer.log()
    finally:
        writer.kill()
    iceberg = catalog_of(config)
    assert not iceberg.table_exists(f"{TABLE}__dlq"), "no record may be a dead letter"
    assert_rows(iceberg.load_table(TABLE).scan().to_arrow(), list(range(RECORDS)))
    audit = audit_cli(config, TOPIC, TABLE)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    return TABLE


@pytest.fixture(scope="module", params=["pyiceberg", "duckdb", "spark", "trino"])
def engine(request: pytest.FixtureRequest, rest_catalog: LocalRestCatalog, protobuf_table: str) -> Iterator[Engine]:
    if request.param == "trino":
        adapter: Any = TrinoEngine(request.getfixturevalue("trino_server"))
    else:
        factories = {"pyiceberg": PyIcebergEngine, "duckdb": DuckDBEngine, "spark": SparkEngine}
        adapter = factories[request.param](rest_catalog)
    yield adapter
    close = getattr(adapter, "close", None)
    if close is not None:
        close()


def comparable(column: str, value: Any) -> Any:
    """Canonical form; a map as a dict whatever the engine hands back (pyarrow: a list of pairs, [] if empty)."""
    value = canonical(value)
    if column in MAP_COLUMNS and value is not None:
        return dict(value)
    return value


def test_the_protobuf_table_reads_back_in_every_engine(engine: Engine, protobuf_table: str) -> None:
    rows = engine.rows(protobuf_table, COLUMNS)
    got = {row["id"]: {c: comparable(c, v) for c, v in row.items()} for row in rows}
    assert len(rows) == RECORDS and sorted(got) == list(range(RECORDS))
    want = {i: {c: comparable(c, v) for c, v in {**expected(i), "_kafka_key": str(i).encode()}.items()}
            for i in range(RECORDS)}
    wrong_columns = sorted({c for i in range(RECORDS) for c in COLUMNS if got[i][c] != want[i][c]})
    wrong = [i for i in range(RECORDS) if got[i] != want[i]]
    assert (wrong_columns, wrong) == ([], []), (got[wrong[0]], want[wrong[0]])
    # The null list of structs stays null in every engine (not []): the records of versions 1 and 2.
    assert {got[i]["lines"] is None for i in range(RECORDS) if i % 3 != 2} == {True}
