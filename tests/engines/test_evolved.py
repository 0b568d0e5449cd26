"""A table that followed its topic through three Avro schema versions, written by two workers at once
with every version's records interleaved, reads back right in every engine."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from tabletopic.local.kafka import LocalKafka
from tabletopic.local.registry import LocalRegistry
from tabletopic.local.rest_catalog import LocalRestCatalog
from tabletopic.local.topics import create_topic
from tests.engines.engines import DuckDBEngine, Engine, PyIcebergEngine, SparkEngine, TrinoEngine
from tests.support import Writer, catalog_of, log_end, produce, wait_committed, writer_config

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

TABLE = "engines.avro_evolved"
RECORDS = 30_000
PARTITIONS = 4
BIG = 2**40  # a quantity only a long holds
V1_FIRST = 4000

V1: dict[str, Any] = {"type": "record", "name": "Order", "namespace": "evolved", "fields": [
    {"name": "id", "type": "long"},
    {"name": "name", "type": "string"},
    {"name": "qty", "type": "int"},
    {"name": "address", "type": {"type": "record", "name": "Address", "fields": [{"name": "city", "type": "string"}]}},
]}
# v2: a new nested field and a new top-level one.
V2: dict[str, Any] = {**V1, "fields": [
    *V1["fields"][:3],
    {"name": "address", "type": {"type": "record", "name": "Address", "fields": [
        {"name": "city", "type": "string"}, {"name": "zip", "type": ["null", "int"], "default": None}]}},
    {"name": "note", "type": ["null", "string"], "default": None},
]}
# v3: qty widened int -> long, name made optional.
V3: dict[str, Any] = {**V2, "fields": [
    V2["fields"][0],
    {"name": "name", "type": ["null", "string"], "default": None},
    {"name": "qty", "type": "long"},
    *V2["fields"][3:],
]}
VERSIONS = [V1, V2, V3]


def version(i: int) -> int:
    """v1 first (the table is made from it), then all three versions interleaved. Record i goes to
    partition i % PARTITIONS, so every partition starts with v1 records whichever worker makes the table."""
    return 0 if i < V1_FIRST else i % 3


def record(i: int) -> dict[str, Any]:
    version_ = version(i)
    value: dict[str, Any] = {"id": i, "name": f"n{i}", "qty": i, "address": {"city": f"c{i % 5}"}}
    if version_ >= 1:
        value["address"]["zip"] = 1000 + i
        value["note"] = f"note{i}"
    if version_ == 2:
        value["qty"] = BIG + i
        value["name"] = None if i % 2 else f"n{i}"
    return value


def expected(i: int) -> dict[str, Any]:
    value = record(i)
    value["address"].setdefault("zip", None)
    value.setdefault("note", None)
    return value


@pytest.fixture(scope="module")
def evolved(kafka: LocalKafka, registry: LocalRegistry, rest_catalog: LocalRestCatalog,
            tmp_path_factory: pytest.TempPathFactory) -> str:
    work = tmp_path_factory.mktemp("evolved")
    topic = "engines-evolved"
    create_topic(kafka.bootstrap, topic, PARTITIONS)
    client = SchemaRegistryClient({"url": registry.url})
    context = SerializationContext(topic, MessageField.VALUE)
    serializers = [AvroSerializer(client, json.dumps(v), conf={"auto.register.schemas": True}) for v in VERSIONS]
    try:
        produce(kafka.bootstrap, topic, ((i % PARTITIONS, None, serializers[version(i)](record(i), context), None)
                                         for i in range(RECORDS)))
    finally:
        client.close()
    config = writer_config(work / "c.yaml", kafka.bootstrap, topic, TABLE, "", workers=2,
                           catalog={"name": "lake", **rest_catalog.client_properties()},
                           schema_registry={"url": registry.url}, table_settings={"format": "avro"})
    writer = Writer(config)
    try:
        wait_committed(catalog_of(config), TABLE, "tests", log_end(kafka.bootstrap, topic, PARTITIONS),
                       timeout=300, writer=writer)
        assert writer.stop() == 0, writer.log()
    finally:
        writer.kill()
    evolved_to = [change for e in writer.named("schema.evolved") for change in e["changes"]]
    assert {"add address.zip int32", "add note string", "widen qty int32 -> int64"} <= set(evolved_to), writer.log()
    iceberg = catalog_of(config)
    assert_exactly_once_by_id(iceberg, config, topic)
    return TABLE


def assert_exactly_once_by_id(iceberg: Any, config: Any, topic: str) -> None:
    ids = iceberg.load_table(TABLE).scan(selected_fields=("id",)).to_arrow()["id"].to_pylist()
    assert sorted(ids) == list(range(RECORDS))
    from tests.support import audit_cli

    audit = audit_cli(config, topic, TABLE)
    assert audit.returncode == 0, audit.stdout + audit.stderr


@pytest.fixture(scope="module", params=["pyiceberg", "duckdb", "spark", "trino"])
def engine(request: pytest.FixtureRequest, rest_catalog: LocalRestCatalog, evolved: str) -> Iterator[Engine]:
    if request.param == "trino":
        adapter: Any = TrinoEngine(request.getfixturevalue("trino_server"))
    else:
        factories = {"pyiceberg": PyIcebergEngine, "duckdb": DuckDBEngine, "spark": SparkEngine}
        adapter = factories[request.param](rest_catalog)
    yield adapter
    close = getattr(adapter, "close", None)
    if close is not None:
        close()


def test_the_evolved_table_reads_back_in_every_engine(engine: Engine, evolved: str):
    rows = engine.rows(evolved, ["id", "name", "qty", "address", "note"])
    got = {row["id"]: row for row in rows}
    assert len(rows) == RECORDS and sorted(got) == list(range(RECORDS))
    wrong = [i for i in range(RECORDS) if got[i] != expected(i)]
    assert wrong == [], (got[wrong[0]], expected(wrong[0]))
