"""A real CDC pipeline for tests: PostgreSQL (logical replication) -> Debezium's Postgres connector in Kafka
Connect -> the session's Kafka broker. One Postgres and one Connect worker per session, started on first use;
one connector per test (`start_cdc_connector`), each with its own slot, publication and topic prefix.

A test module uses the fixtures by importing them: `from tests.cdc_stack import debezium_connect, postgres`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition

from tabletopic.local import debezium
from tabletopic.local.connect import LocalConnect
from tabletopic.local.kafka import LocalKafka
from tabletopic.local.postgres import LocalPostgres

_SLOT_NAME = re.compile(r"[a-z0-9_]{1,50}")
JSON_CONVERTER = "org.apache.kafka.connect.json.JsonConverter"
SLOT_TIMEOUT_S = 60.0


@pytest.fixture(scope="session")
def postgres() -> Iterator[LocalPostgres]:
    # postgres_bin() fails with the apt-get line when PostgreSQL is not installed.
    server = LocalPostgres().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def debezium_connect(tmp_path_factory: pytest.TempPathFactory, kafka: LocalKafka) -> Iterator[LocalConnect]:
    """A Connect worker (no connector yet) with Debezium's Postgres plugin on its plugin path."""
    worker = LocalConnect(tmp_path_factory.mktemp("debezium-connect"), kafka.bootstrap, debezium.fetch()).start()
    yield worker
    worker.stop()


@dataclass(frozen=True)
class CdcConnector:
    name: str
    topic: str  # the one topic of the captured table: <prefix>.<schema>.<table>
    slot: str


def cdc_connector_config(
    postgres: LocalPostgres, table: str, topic_prefix: str, slot: str, key_schemas: bool = False,
    value_schemas: bool = True,
) -> dict[str, str]:
    """The Debezium connector's properties capturing `table` ("schema.table", or "table" in public)."""
    if not _SLOT_NAME.fullmatch(slot):
        raise ValueError(f"slot {slot!r}: PostgreSQL wants lower-case letters, digits and _ (at most 63)")
    qualified = table if "." in table else f"public.{table}"
    return {
        "connector.class": debezium.CONNECTOR_CLASS,
        "tasks.max": "1",
        "plugin.name": "pgoutput",
        "database.hostname": postgres.host,
        "database.port": str(postgres.port),
        "database.user": postgres.user,
        "database.password": "unused",  # trust auth
        "database.dbname": postgres.database,
        "topic.prefix": topic_prefix,
        "slot.name": slot,
        # One publication per connector, holding only its table: connectors never see each other's tables.
        "publication.name": f"{slot}_publication",
        "publication.autocreate.mode": "filtered",
        "table.include.list": qualified,
        "key.converter": JSON_CONVERTER,
        "key.converter.schemas.enable": str(key_schemas).lower(),
        "value.converter": JSON_CONVERTER,
        "value.converter.schemas.enable": str(value_schemas).lower(),
        "decimal.handling.mode": "string",
        # The test broker does not auto-create topics: Connect creates the table's topic.
        "topic.creation.default.partitions": "1",
        "topic.creation.default.replication.factor": "1",
    }


def start_cdc_connector(
    connect: LocalConnect, postgres: LocalPostgres, table: str, topic_prefix: str, slot: str,
    key_schemas: bool = False, value_schemas: bool = True,
) -> CdcConnector:
    """Start a Debezium connector on `table`; return once its task runs and its replication slot exists.

    From then on, rows committed before the slot come as snapshot reads (`r`) and every later change streams
    after them (`c`/`u`/`d`), so a test's changes arrive in the order it made them.
    """
    config = cdc_connector_config(postgres, table, topic_prefix, slot, key_schemas, value_schemas)
    name = f"cdc-{topic_prefix}"
    connect.put_connector(name, config)
    connect.wait_task_running(name)
    deadline = time.monotonic() + SLOT_TIMEOUT_S
    while not postgres.psql(f"SELECT 1 FROM pg_replication_slots WHERE slot_name = '{slot}'").strip():
        connect.task_running(name)  # raises if it failed
        if time.monotonic() > deadline:
            raise TimeoutError(f"connector {name}: no replication slot {slot} after {SLOT_TIMEOUT_S:.0f}s")
        time.sleep(0.2)
    return CdcConnector(name, f"{topic_prefix}.{config['table.include.list']}", slot)


@dataclass(frozen=True)
class Record:
    offset: int
    key: bytes | None
    value: bytes | None


def read_records(bootstrap: str, topic: str, count: int, timeout_s: float = 60.0,
                 connect: LocalConnect | None = None, connector: str | None = None) -> list[Record]:
    """The first `count` records of partition 0 of `topic`, waiting for the topic to appear and fill.

    TimeoutError with what was read after `timeout_s`; with `connect` and `connector`, ConnectorFailed at once
    if the connector's task fails meanwhile.
    """
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{topic}", "enable.auto.commit": "false",
                         "auto.offset.reset": "earliest"})
    records: list[Record] = []
    deadline = time.monotonic() + timeout_s
    assigned = False
    try:
        while len(records) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: {len(records)} of {count} records within {timeout_s:.0f}s: {records}")
            if connect is not None and connector is not None:
                connect.task_running(connector)  # raises if it failed
            if not assigned:  # Connect creates the topic with the connector's first record
                topics = consumer.list_topics(topic, timeout=5).topics
                if topic not in topics or topics[topic].error is not None:
                    time.sleep(0.5)
                    continue
                consumer.assign([TopicPartition(topic, 0, 0)])
                assigned = True
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise RuntimeError(f"{topic}: {error}")
            records.append(Record(message.offset(), message.key(), message.value()))
    finally:
        consumer.close()
    return records
