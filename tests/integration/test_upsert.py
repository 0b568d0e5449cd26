"""Upsert tables against a real broker: the table is the latest value per key up to its committed offsets,
a tombstone deletes its key, bad keys are dead letters, and configs that cannot hold exit 2."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from typing import Any

import pyarrow as pa
import pytest

from tabletopic.catalog import reader
from tests.support import audit_cli, catalog_of, create_topic_with, log_end, produce, wait_committed, writer_config

PARTITIONS = 3


def tabletopic(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tabletopic", *args], capture_output=True, text=True, timeout=300)


def keyed(key: Any, value: dict | None, partitions: int = PARTITIONS) -> tuple[int, bytes, bytes | None, None]:
    """A record on its key's partition (as a keyed producer would put it), JSON key and value."""
    raw_key = json.dumps(key).encode()
    partition = (key["id"] if isinstance(key, dict) else hash(key)) % partitions
    return partition, raw_key, None if value is None else json.dumps(value).encode(), None


def model(records: list[tuple[int, bytes, bytes | None, None]]) -> dict[int, dict]:
    """The latest value per key, a tombstone deleting it: what the table must hold."""
    state: dict[int, dict] = {}
    for _, raw_key, raw_value, _ in records:
        key = json.loads(raw_key)["id"]
        if raw_value is None:
            state.pop(key, None)
        else:
            state[key] = json.loads(raw_value)
    return state


def table_rows(catalog, table: str, columns: list[str]) -> dict[int, dict]:
    rows = reader.read(catalog.load_table(table), columns=columns).to_pylist()
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), "a key twice"
    return {r["id"]: {c: r[c] for c in columns} for r in rows}


def history(seed: int, keys: int, changes: int) -> list[tuple[int, bytes, bytes | None, None]]:
    rng = random.Random(seed)
    records = []
    for n in range(changes):
        key = rng.randrange(keys)
        value = None if rng.random() < 0.2 else {"id": key, "v": f"v{n}", "n": n}
        records.append(keyed({"id": key}, value))
    return records


def test_updates_and_tombstones_leave_the_latest_value_per_key(kafka, new_topic, spawn_writer, tmp_path):
    topic = new_topic(PARTITIONS)
    table = "up.state"
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "wh",
                           table_settings={"mode": "upsert"})
    first = history(1, 200, 3000)
    produce(kafka.bootstrap, topic, first)
    writer = spawn_writer(config)
    catalog = catalog_of(config)
    wait_committed(catalog, table, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), writer=writer)
    assert table_rows(catalog, table, ["id", "v", "n"]) == model(first)

    # A second round in later commits: updates of old keys, deletes, and keys deleted then inserted again.
    second = history(2, 200, 2000)
    second += [keyed({"id": 7}, None), keyed({"id": 7}, {"id": 7, "v": "back", "n": -1})]
    produce(kafka.bootstrap, topic, second)
    wait_committed(catalog, table, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), writer=writer)
    assert writer.stop() == 0
    expected = model(first + second)
    assert expected[7]["v"] == "back"
    assert table_rows(catalog, table, ["id", "v", "n"]) == expected

    loaded = catalog.load_table(table)
    schema = loaded.schema()
    assert [schema.find_column_name(i) for i in schema.identifier_field_ids] == ["id"]
    assert loaded.metadata.properties["tabletopic.mode"] == "upsert"
    # Every row carries the offset of the record that won.
    offsets = reader.read(loaded, columns=["id", "_kafka_partition", "_kafka_offset"]).to_pylist()
    winners = {}
    ends = dict.fromkeys(range(PARTITIONS), 0)
    for partition, raw_key, raw_value, _ in first + second:
        if raw_value is not None:
            winners[json.loads(raw_key)["id"]] = (partition, ends[partition])
        else:
            winners.pop(json.loads(raw_key)["id"], None)
        ends[partition] += 1
    assert {r["id"]: (r["_kafka_partition"], r["_kafka_offset"]) for r in offsets} == winners
    audit = audit_cli(config, topic, table)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert "every key holds its latest value" in audit.stdout

    # A backfill into the live table would apply older changes over newer ones; into a new table it is a
    # rebuild, and the rebuilt table equals the live one.
    refused = tabletopic("backfill", "--config", str(config), "--topic", topic, "--table", table, "--from-offset", "0")
    assert refused.returncode == 2 and "live upsert table" in refused.stderr, refused.stderr
    rebuilt = tabletopic("backfill", "--config", str(config), "--topic", topic, "--table", table,
                         "--into", "up.state_rebuilt", "--from-offset", "0")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert table_rows(catalog, "up.state_rebuilt", ["id", "v", "n"]) == expected


def test_bad_keys_are_dead_letters_and_the_other_keys_go_on(kafka, new_topic, spawn_writer, tmp_path):
    topic = new_topic(1)
    table = "up.badkeys"
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "wh",
                           table_settings={"mode": "upsert"})
    records: list[tuple[int, bytes | None, bytes | None, None]] = [
        (0, b'{"id": 1}', b'{"id": 1, "v": "a"}', None),
        (0, None, b'{"id": 2, "v": "no key"}', None),  # missing_key
        (0, b'{"id": 3}', b'{"id": 4, "v": "mismatch"}', None),  # key_mismatch
        (0, b"not json", b'{"v": "x"}', None),  # the key does not decode
        (0, None, None, None),  # a tombstone without a key: missing_key
        (0, b'{"id": "five"}', b'{"v": "wrong key type"}', None),  # type_mismatch once id is a long
        (0, b'{"id": 6}', b'{"v": "value without the key field"}', None),
        (0, b'{"id": 1}', b'{"id": 1, "v": "b"}', None),
    ]
    produce(kafka.bootstrap, topic, records)
    writer = spawn_writer(config)
    catalog = catalog_of(config)
    wait_committed(catalog, table, "tests", {(topic, 0): len(records)}, writer=writer)
    assert writer.stop() == 0
    rows = reader.read(catalog.load_table(table), columns=["id", "v"]).to_pylist()
    assert sorted(rows, key=lambda r: r["id"]) == [{"id": 1, "v": "b"}, {"id": 6, "v": "value without the key field"}]
    letters = catalog.load_table(f"{table}__dlq").scan().to_arrow().sort_by("_kafka_offset").to_pylist()
    assert [(r["_kafka_offset"], r["reason"]) for r in letters] == [
        (1, "missing_key"), (2, "key_mismatch"), (3, "malformed_json"), (4, "missing_key"), (5, "type_mismatch"),
    ]
    # An old change replayed now could overwrite a newer value: refused, and the dead letters stay.
    replayed = tabletopic("dlq", "replay", "--config", str(config), "--table", table)
    assert replayed.returncode == 2 and "upsert table" in replayed.stderr, replayed.stderr
    assert catalog.load_table(f"{table}__dlq").scan().count() == 5


def test_a_string_key_is_one_key_column(kafka, new_topic, spawn_writer, tmp_path):
    topic = new_topic(1)
    table = "up.strings"
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "wh",
                           table_settings={"mode": "upsert", "key_format": "string",
                                           "partition_by": ["bucket(4, _key)"]})
    records = [(0, f"user-{n % 10}".encode(), None if n % 7 == 6 else json.dumps({"n": n}).encode(), None)
               for n in range(100)]
    produce(kafka.bootstrap, topic, records)
    writer = spawn_writer(config)
    catalog = catalog_of(config)
    wait_committed(catalog, table, "tests", {(topic, 0): len(records)}, writer=writer)
    assert writer.stop() == 0
    state: dict[str, int] = {}
    for _, key, value, _ in records:
        if value is None:
            state.pop(key.decode(), None)
        else:
            state[key.decode()] = json.loads(value)["n"]
    rows = reader.read(catalog.load_table(table), columns=["_key", "n"]).to_pylist()
    assert {r["_key"]: r["n"] for r in rows} == state
    assert len(rows) == len(state)
    audit = audit_cli(config, topic, table)
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_value_columns_as_the_key(kafka, new_topic, spawn_writer, tmp_path):
    topic = new_topic(1)
    table = "up.valuekey"
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "wh",
                           table_settings={"mode": "upsert", "key": ["region", "id"]})
    records = [
        (0, None, b'{"region": "eu", "id": 1, "v": 1}', None),
        (0, None, b'{"region": "us", "id": 1, "v": 2}', None),
        (0, None, b'{"region": "eu", "id": 1, "v": 3}', None),
        (0, b'{"region": "us", "id": 1}', None, None),  # a tombstone names its key in the Kafka key
        (0, None, b'{"id": 2, "v": 4}', None),  # no region: missing_key
    ]
    produce(kafka.bootstrap, topic, records)
    writer = spawn_writer(config)
    catalog = catalog_of(config)
    wait_committed(catalog, table, "tests", {(topic, 0): len(records)}, writer=writer)
    assert writer.stop() == 0
    rows = reader.read(catalog.load_table(table), columns=["region", "id", "v"]).to_pylist()
    assert rows == [{"region": "eu", "id": 1, "v": 3}]
    letters = catalog.load_table(f"{table}__dlq").scan().to_arrow().to_pylist()
    assert [(r["_kafka_offset"], r["reason"]) for r in letters] == [(4, "missing_key")]


def _debezium(op: str, before: dict | None, after: dict | None, schemas: bool) -> bytes:
    payload = {"before": before, "after": after, "op": op, "source": {"ts_ms": 1700000000000, "lsn": 42},
               "ts_ms": 1700000000001}
    return json.dumps({"schema": {"type": "struct"}, "payload": payload} if schemas else payload).encode()


def test_debezium_json_envelopes(kafka, new_topic, spawn_writer, tmp_path):
    topic = new_topic(1)
    table = "up.cdc"
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "wh",
                           table_settings={"envelope": "debezium", "cdc_columns": {"op": "_op", "lsn": "_lsn"}})

    def key(n: int) -> bytes:
        return json.dumps({"schema": {"type": "struct"}, "payload": {"id": n}}).encode()

    records = [
        (0, key(1), _debezium("r", None, {"id": 1, "name": "a"}, True), None),
        (0, key(2), _debezium("c", None, {"id": 2, "name": "b"}, False), None),
        (0, key(1), _debezium("u", {"id": 1, "name": "a"}, {"id": 1, "name": "a2"}, True), None),
        (0, key(2), _debezium("d", {"id": 2, "name": "b"}, None, True), None),
        (0, key(2), None, None),  # the tombstone after the delete: absorbed
        (0, key(3), _debezium("x", None, {"id": 3}, True), None),  # unknown op: bad_envelope
        (0, key(3), _debezium("c", None, None, True), None),  # no after: bad_envelope
        (0, None, _debezium("t", None, None, True), None),  # truncate: a documented dead letter
        (0, None, _debezium("d", {"id": 1, "name": "a2"}, None, False), None),  # no Kafka key: `before` says
        (0, key(4), _debezium("c", None, {"id": 4, "name": "d"}, True), None),
    ]
    produce(kafka.bootstrap, topic, records)
    writer = spawn_writer(config)
    catalog = catalog_of(config)
    wait_committed(catalog, table, "tests", {(topic, 0): len(records)}, writer=writer)
    assert writer.stop() == 0
    rows = reader.read(catalog.load_table(table), columns=["id", "name", "_op", "_lsn"]).to_pylist()
    assert rows == [{"id": 4, "name": "d", "_op": "c", "_lsn": 42}]
    letters = catalog.load_table(f"{table}__dlq").scan().to_arrow().sort_by("_kafka_offset").to_pylist()
    assert [(r["_kafka_offset"], r["reason"]) for r in letters] == [
        (5, "bad_envelope"), (6, "bad_envelope"), (7, "truncate_unsupported"),
    ]
    audit = audit_cli(config, topic, table)
    assert audit.returncode == 0, audit.stdout + audit.stderr


@pytest.mark.parametrize("settings, named", [
    ({"mode": "upsert", "key": ["id"], "partition_by": ["day(_kafka_timestamp)"]}, "day(_kafka_timestamp)"),
    ({"mode": "upsert", "partition_by": ["region"]}, "region"),  # the Kafka key's fields, known once decoded
])
def test_a_partition_spec_not_from_the_key_exits_2(settings, named, kafka, new_topic, spawn_writer, tmp_path):
    topic = new_topic(1)
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, "up.scope", tmp_path / "wh",
                           table_settings=settings)
    produce(kafka.bootstrap, topic, [(0, b'{"id": 1}', b'{"id": 1, "region": "eu"}', None)])
    writer = spawn_writer(config)
    assert writer.wait_exit(120) == 2
    assert "not computed from the key" in writer.log()
    assert named.split("(")[0] in writer.log()


def test_an_append_table_is_never_converted(kafka, new_topic, spawn_writer, tmp_path):
    topic = new_topic(1)
    table = "up.was_append"
    produce(kafka.bootstrap, topic, [(0, b'{"id": 1}', b'{"id": 1}', None)])
    append = writer_config(tmp_path / "a.yaml", kafka.bootstrap, topic, table, tmp_path / "wh")
    writer = spawn_writer(append)
    wait_committed(catalog_of(append), table, "tests", {(topic, 0): 1}, writer=writer)
    assert writer.stop() == 0
    upsert = writer_config(tmp_path / "u.yaml", kafka.bootstrap, topic, table, tmp_path / "wh",
                           table_settings={"mode": "upsert"}, group_id="other")
    produce(kafka.bootstrap, topic, [(0, b'{"id": 1}', b'{"id": 1}', None)])
    writer = spawn_writer(upsert)
    assert writer.wait_exit(120) == 2
    assert "never converted" in writer.log()
    assert pa.types.is_integer(catalog_of(append).load_table(table).schema().as_arrow().field("id").type)


def _offsets_present(bootstrap: str, topic: str) -> list[int]:
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{time.time_ns()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "isolation.level": "read_committed"})
    try:
        consumer.subscribe([topic])
        offsets: list[int] = []
        deadline = time.monotonic() + 20
        idle = 0
        while time.monotonic() < deadline and idle < 3:
            message = consumer.poll(1.0)
            if message is None:
                idle += 1 if offsets else 0
                continue
            idle = 0
            if message.error() is None:
                offsets.append(message.offset())
        return offsets
    finally:
        consumer.close()


def test_a_compacted_topic_written_in_transactions(kafka, new_topic, spawn_writer, tmp_path):
    """Offset gaps everywhere: records the log cleaner removed, commit markers and aborted transactions.
    None of it stalls a partition, and only committed changes reach the table."""
    from confluent_kafka import Producer

    topic = f"up-compacted-{time.time_ns()}"
    create_topic_with(kafka.bootstrap, topic, 1, {
        "cleanup.policy": "compact", "segment.ms": "200", "min.cleanable.dirty.ratio": "0.01",
        "delete.retention.ms": "100", "min.compaction.lag.ms": "0"})
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "transactional.id": f"up-{topic}"})
    producer.init_transactions()
    committed: list[tuple[int, bytes, bytes | None, None]] = []
    for batch in range(12):
        producer.begin_transaction()
        changes = [keyed({"id": (batch * 7 + i) % 10}, None if (batch + i) % 5 == 0 else
                         {"id": (batch * 7 + i) % 10, "batch": batch, "i": i}, partitions=1) for i in range(20)]
        for _, key, value, _ in changes:
            producer.produce(topic, key=key, value=value)
        producer.flush()
        if batch % 3 == 2:
            producer.abort_transaction()
        else:
            producer.commit_transaction()
            committed += changes
        time.sleep(0.3)  # segments roll, so the cleaner has closed ones to compact
    # The cleaner runs every 15 s by default: wait until it has removed superseded records.
    deadline = time.monotonic() + 120
    while True:
        producer.begin_transaction()  # a record that rolls the last segment
        roll = keyed({"id": 99}, {"id": 99, "batch": -1, "i": -1}, partitions=1)
        producer.produce(topic, key=roll[1], value=roll[2])
        producer.commit_transaction()
        committed.append(roll)
        present = _offsets_present(kafka.bootstrap, topic)
        if len(present) < len(committed):
            break
        assert time.monotonic() < deadline, "the log cleaner never compacted the topic"
        time.sleep(5)
    # After the last commit marker, a plain record: the table's offset then reaches the log end (a marker at the
    # end leaves it one short, which issue 21 is about).
    last = keyed({"id": 98}, {"id": 98, "batch": -2, "i": -2}, partitions=1)
    produce(kafka.bootstrap, topic, [last])
    committed.append(last)
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, "up.compacted", tmp_path / "wh",
                           table_settings={"mode": "upsert"})
    writer = spawn_writer(config)
    catalog = catalog_of(config)
    wait_committed(catalog, "up.compacted", "tests", log_end(kafka.bootstrap, topic, 1), writer=writer)
    assert writer.stop() == 0
    rows = reader.read(catalog.load_table("up.compacted"), columns=["id", "batch", "i"]).to_pylist()
    assert {r["id"]: r for r in rows} == model(committed)
    assert len(rows) == len(model(committed))
    audit = audit_cli(config, topic, "up.compacted")
    assert audit.returncode == 0, audit.stdout + audit.stderr


AVRO_KEY = {"type": "record", "name": "AccountKey", "namespace": "tests",
            "fields": [{"name": "account", "type": "string"}, {"name": "region", "type": "int"}]}
AVRO_VALUE = {"type": "record", "name": "Balance", "namespace": "tests",
              "fields": [{"name": "account", "type": "string"}, {"name": "balance", "type": "long"},
                         {"name": "memo", "type": ["null", "string"], "default": None}]}


def test_avro_keys_and_values_through_the_registry(kafka, registry, new_topic, spawn_writer, tmp_path):
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    topic = new_topic(1)
    table = "up.avro"
    client = SchemaRegistryClient({"url": registry.url})
    try:
        keys = AvroSerializer(client, json.dumps(AVRO_KEY), conf={"auto.register.schemas": True})
        values = AvroSerializer(client, json.dumps(AVRO_VALUE), conf={"auto.register.schemas": True})
        key_context = SerializationContext(topic, MessageField.KEY)
        value_context = SerializationContext(topic, MessageField.VALUE)
        rng = random.Random(3)
        changes = []
        for n in range(400):
            key = {"account": f"a{rng.randrange(30)}", "region": rng.randrange(2)}
            value = None if rng.random() < 0.2 else {"account": key["account"], "balance": n, "memo": None}
            changes.append((key, value))
        records = [(0, keys(k, key_context), None if v is None else values(v, value_context), None)
                   for k, v in changes]
    finally:
        client.close()
    produce(kafka.bootstrap, topic, records)
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "wh",
                           schema_registry={"url": registry.url},
                           table_settings={"format": "avro", "mode": "upsert", "partition_by": ["bucket(4, account)"]})
    writer = spawn_writer(config)
    catalog = catalog_of(config)
    wait_committed(catalog, table, "tests", {(topic, 0): len(records)}, writer=writer)
    assert writer.stop() == 0
    expected: dict[tuple[str, int], int] = {}
    for key, value in changes:
        if value is None:
            expected.pop((key["account"], key["region"]), None)
        else:
            expected[(key["account"], key["region"])] = value["balance"]
    loaded = catalog.load_table(table)
    schema = loaded.schema()
    assert [schema.find_column_name(i) for i in schema.identifier_field_ids] == ["account", "region"]
    rows = reader.read(loaded, columns=["account", "region", "balance"]).to_pylist()
    assert {(r["account"], r["region"]): r["balance"] for r in rows} == expected
    assert len(rows) == len(expected)
    audit = audit_cli(config, topic, table)
    assert audit.returncode == 0, audit.stdout + audit.stderr


def _envelope_schema(value_fields: list[dict]) -> dict:
    value = {"type": "record", "name": "Value", "namespace": "pg.public.items", "fields": value_fields}
    source = {"type": "record", "name": "Source", "namespace": "io.debezium.connector.postgresql",
              "fields": [{"name": "ts_ms", "type": "long"}, {"name": "lsn", "type": ["null", "long"], "default": None}]}
    return {"type": "record", "name": "Envelope", "namespace": "pg.public.items", "fields": [
        {"name": "before", "type": ["null", value], "default": None},
        {"name": "after", "type": ["null", "Value"], "default": None},  # named once, in `before`, as Debezium does
        {"name": "source", "type": source},
        {"name": "op", "type": "string"},
        {"name": "ts_ms", "type": ["null", "long"], "default": None},
    ]}


def test_debezium_avro_envelopes_through_the_registry(kafka, registry, new_topic, spawn_writer, tmp_path):
    from datetime import UTC, datetime

    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    topic = new_topic(1)
    table = "up.cdc_avro"
    v1 = [{"name": "id", "type": "long"}, {"name": "name", "type": "string"},
          {"name": "at", "type": ["null", {"type": "long", "logicalType": "timestamp-micros"}], "default": None}]
    v2 = [*v1, {"name": "note", "type": ["null", "string"], "default": None}]
    at = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)

    def event(op: str, before: dict | None, after: dict | None) -> dict:
        return {"before": before, "after": after, "source": {"ts_ms": 1767225600000, "lsn": 7}, "op": op,
                "ts_ms": 1767225600001}

    client = SchemaRegistryClient({"url": registry.url})
    try:
        conf = {"auto.register.schemas": True}
        key = AvroSerializer(client, json.dumps({"type": "record", "name": "Key", "namespace": "pg.public.items",
                                                 "fields": [{"name": "id", "type": "long"}]}), conf=conf)
        first = AvroSerializer(client, json.dumps(_envelope_schema(v1)), conf=conf)
        second = AvroSerializer(client, json.dumps(_envelope_schema(v2)), conf=conf)
        keys, values = SerializationContext(topic, MessageField.KEY), SerializationContext(topic, MessageField.VALUE)

        def k(n: int) -> bytes:
            return key({"id": n}, keys)

        records = [
            (0, k(1), first(event("r", None, {"id": 1, "name": "a", "at": at}), values), None),
            (0, k(2), first(event("c", None, {"id": 2, "name": "b", "at": None}), values), None),
            (0, k(1), first(event("u", None, {"id": 1, "name": "a2", "at": at}), values), None),
            (0, k(2), first(event("d", {"id": 2, "name": "b", "at": None}, None), values), None),
            (0, k(2), None, None),  # the tombstone after the delete
            (0, k(9), first(event("t", None, None), values), None),  # truncate: a dead letter
            (0, k(9), first(event("x", None, {"id": 9, "name": "?", "at": None}), values), None),  # unknown op
            (0, k(3), second(event("c", None, {"id": 3, "name": "c", "at": None, "note": "new column"}), values),
             None),
            (0, None, second(event("c", None, {"id": 4, "name": "d", "at": None, "note": None}), values), None),
        ]
    finally:
        client.close()
    produce(kafka.bootstrap, topic, records)
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "wh",
                           schema_registry={"url": registry.url},
                           table_settings={"format": "avro", "envelope": "debezium", "cdc_columns": {"op": "_op"}})
    writer = spawn_writer(config)
    catalog = catalog_of(config)
    wait_committed(catalog, table, "tests", {(topic, 0): len(records)}, writer=writer)
    assert writer.stop() == 0
    loaded = catalog.load_table(table)
    assert loaded.schema().as_arrow().field("at").type == pa.timestamp("us", tz="UTC")
    rows = reader.read(loaded, columns=["id", "name", "at", "note", "_op"]).sort_by("id").to_pylist()
    assert rows == [{"id": 1, "name": "a2", "at": at, "note": None, "_op": "u"},
                    {"id": 3, "name": "c", "at": None, "note": "new column", "_op": "c"}]
    letters = catalog.load_table(f"{table}__dlq").scan().to_arrow().sort_by("_kafka_offset").to_pylist()
    assert [(r["_kafka_offset"], r["reason"]) for r in letters] == [
        (5, "truncate_unsupported"), (6, "bad_envelope"), (8, "missing_key")]
    assert letters[0]["_kafka_value"] == records[5][2]  # the dead letter keeps the envelope as it came
    audit = audit_cli(config, topic, table)
    assert audit.returncode == 0, audit.stdout + audit.stderr
