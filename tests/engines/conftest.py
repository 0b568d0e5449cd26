"""The tables every engine reads: written by tabletopic from a real broker into a REST catalog on S3.

Two runs of the writer, so the tables have an earlier snapshot to travel back to.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from tabletopic.local.kafka import LocalKafka
from tabletopic.local.registry import LocalRegistry
from tabletopic.local.rest_catalog import LocalRestCatalog
from tests.engines import dataset
from tests.support import Writer, catalog_of, log_end, produce, wait_committed, writer_config

PARTITIONS = 4
PER_RUN = 3000  # records per topic per writer run
GROUP = "engines"


@dataclass
class Lake:
    catalog: LocalRestCatalog
    json_topic: str
    avro_topic: str
    records: int  # per table
    first_snapshot: dict[str, int]  # table -> snapshot id after the first run
    first_count: int
    partition_counts: dict[str, dict[int, int]]  # table -> kafka partition -> rows


def _run_writer(config: Path, table: str, ends: dict[tuple[str, int], int]) -> None:
    writer = Writer(config)
    try:
        wait_committed(catalog_of(config), table, GROUP, ends, timeout=300, writer=writer)
        assert writer.stop() == 0, writer.log()
    finally:
        writer.kill()


@pytest.fixture(scope="session")
def lake(
    kafka: LocalKafka,
    registry: LocalRegistry,
    rest_catalog: LocalRestCatalog,
    tmp_path_factory: pytest.TempPathFactory,
) -> Lake:
    work = tmp_path_factory.mktemp("lake")
    from tabletopic.local.topics import create_topic

    json_topic, avro_topic = "engines-json", "engines-avro"
    create_topic(kafka.bootstrap, json_topic, PARTITIONS)
    create_topic(kafka.bootstrap, avro_topic, PARTITIONS)
    client = SchemaRegistryClient({"url": registry.url})
    serialize = AvroSerializer(client, json.dumps(dataset.AVRO_SCHEMA), conf={"auto.register.schemas": True})
    context = SerializationContext(avro_topic, MessageField.VALUE)
    catalog = {"name": "lake", **rest_catalog.client_properties()}
    configs = {
        dataset.JSON_TABLE: writer_config(
            work / "json.yaml", kafka.bootstrap, json_topic, dataset.JSON_TABLE, "", catalog=catalog,
            group_id=GROUP, table_settings={"partition_by": dataset.JSON_PARTITION_BY}),
        dataset.AVRO_TABLE: writer_config(
            work / "avro.yaml", kafka.bootstrap, avro_topic, dataset.AVRO_TABLE, "", catalog=catalog,
            group_id=GROUP, schema_registry={"url": registry.url},
            table_settings={"format": "avro", "partition_by": dataset.AVRO_PARTITION_BY}),
    }
    producers: dict[str, Callable[[int], tuple[bytes | None, bytes]]] = {
        dataset.JSON_TABLE: lambda i: (f"k{i}".encode(), dataset.json_value(i)),
        dataset.AVRO_TABLE: lambda i: (str(i).encode(), serialize(dataset.avro_record(i), context)),
    }
    topics = {dataset.JSON_TABLE: json_topic, dataset.AVRO_TABLE: avro_topic}
    first_snapshot: dict[str, int] = {}
    try:
        for run in range(2):
            for table, topic in topics.items():
                make = producers[table]
                produce(kafka.bootstrap, topic, (
                    (None, *make(i), [("run", str(run).encode())])
                    for i in range(run * PER_RUN, (run + 1) * PER_RUN)
                ))
                _run_writer(configs[table], table, log_end(kafka.bootstrap, topic, PARTITIONS))
                if run == 0:
                    snapshot = catalog_of(configs[table]).load_table(table).current_snapshot()
                    assert snapshot is not None
                    first_snapshot[table] = snapshot.snapshot_id
    finally:
        client.close()
    partition_counts = {}
    for table, topic in topics.items():
        ends = log_end(kafka.bootstrap, topic, PARTITIONS)
        partition_counts[table] = {p: n for (_, p), n in ends.items()}
    return Lake(rest_catalog, json_topic, avro_topic, 2 * PER_RUN, first_snapshot, PER_RUN, partition_counts)
