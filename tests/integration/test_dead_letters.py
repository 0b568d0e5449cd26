"""Poison records go to `<table>__dlq` with their reason, the rest to the table, each offset exactly
once across the two (audit); JSON drift under each policy; a registry outage makes no dead letters."""

from __future__ import annotations

import hashlib
import json
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from tabletopic.commit.committer import table_offsets
from tabletopic.deadletter.rows import MAX_KEPT_BYTES, dlq_identifier
from tests.support import (
    assert_values_equal,
    audit_values_cli,
    catalog_of,
    create_topic_with,
    feed_slowly,
    log_end,
    produce,
    produce_large,
    wait_committed,
    writer_config,
)

PARTITIONS = 4
SCHEMA = {"type": "record", "name": "Reading", "namespace": "dlq", "fields": [
    {"name": "n", "type": "long"}, {"name": "memo", "type": "string"}]}
# The same record name with `n` as a string: a change the table refuses.
NARROWED = {**SCHEMA, "fields": [{"name": "n", "type": "string"}, {"name": "memo", "type": "string"}]}
MAX_RECORD_BYTES = 2000


@pytest.fixture
def client(registry) -> Iterator[SchemaRegistryClient]:
    registry_client = SchemaRegistryClient({"url": registry.url})
    yield registry_client
    registry_client.close()


def test_one_percent_poison_goes_to_the_dead_letters_with_its_reason(
    kafka, registry, client, new_topic, spawn_writer, tmp_path
):
    records = 100_000
    topic = new_topic(PARTITIONS)
    table = "dlq.readings"
    good = AvroSerializer(client, json.dumps(SCHEMA), conf={"auto.register.schemas": True})
    context = SerializationContext(topic, MessageField.VALUE)
    # The refused version lives under another subject, as a producer with the wrong schema would put it.
    narrowed = AvroSerializer(client, json.dumps(NARROWED), conf={"auto.register.schemas": True})
    other = SerializationContext(f"{topic}-other", MessageField.VALUE)
    poison = {
        "not_wire_format": lambda n: json.dumps({"n": n}).encode(),
        "unknown_schema_id": lambda n: b"\x00\x00\x0f\x42\x3f" + good({"n": n, "memo": ""}, context)[5:],
        "undecodable_avro": lambda n: good({"n": n, "memo": "m"}, context)[:6],
        "incompatible_schema": lambda n: narrowed({"n": str(n), "memo": ""}, other),
        "oversized": lambda n: good({"n": n, "memo": "x" * (MAX_RECORD_BYTES + 1)}, context),
    }
    kinds = list(poison)

    def value(n: int) -> bytes:
        if n % 100 == 7:
            return poison[kinds[(n // 100) % len(kinds)]](n)
        return good({"n": n, "memo": f"m{n}"}, context)

    produce(kafka.bootstrap, topic, ((None, str(n).encode(), value(n), None) for n in range(records)))
    copies_topic = new_topic(1)
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "wh",
                           schema_registry={"url": registry.url},
                           table_settings={"format": "avro", "max_record_bytes": MAX_RECORD_BYTES,
                                           "dead_letter_topic": copies_topic})
    writer = spawn_writer(config)
    iceberg = catalog_of(config)
    wait_committed(iceberg, table, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), timeout=300, writer=writer)
    assert writer.stop() == 0, writer.log()

    bad = {n for n in range(records) if n % 100 == 7}
    values = iceberg.load_table(table).scan(selected_fields=("n",)).to_arrow()["n"].to_pylist()
    assert sorted(values) == sorted(set(range(records)) - bad)
    letters = iceberg.load_table(dlq_identifier(table)).scan(
        selected_fields=("_kafka_key", "reason", "message", "_kafka_value", "_kafka_offset")).to_arrow().to_pylist()
    by_key = {int(letter["_kafka_key"]): letter for letter in letters}
    assert sorted(by_key) == sorted(bad) and len(letters) == len(bad)
    for n, letter in by_key.items():
        assert letter["reason"] == kinds[(n // 100) % len(kinds)], letter
        assert letter["_kafka_value"] == value(n) or letter["reason"] in ("unknown_schema_id", "incompatible_schema")
    assert Counter(letter["reason"] for letter in letters) == Counter(kinds[(n // 100) % len(kinds)] for n in bad)
    audit = audit_values_cli(config, topic, table)
    assert_values_equal(audit)  # rows and dead letters each hold their own record
    partition_lines = [line for line in audit.stdout.splitlines()[1:] if line.split()[0].isdigit()]
    assert sum(int(line.split()[5]) for line in partition_lines) == len(bad)  # the `dead` column

    # The copies on the dead-letter topic (at least once; this run had no crash, so exactly once).
    copies = read_all(kafka.bootstrap, copies_topic)
    assert sorted(int(key) for key, _ in copies) == sorted(bad)
    assert {headers["tabletopic.reason"].decode() for _, headers in copies} == set(kinds)


OLD = [(None, None, json.dumps({"n": n, "s": {"a": n}}).encode(), None) for n in range(2000)]
NEW = [(None, None, json.dumps({"n": n, "s": {"a": n, "b": f"b{n}"}, "extra": n * 2}).encode(), None)
       for n in range(2000, 3000)]


def read_all(bootstrap: str, topic: str) -> list[tuple[bytes, dict[str, bytes]]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{topic}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    got: list[tuple[bytes, dict[str, bytes]]] = []
    try:
        idle = 0
        while idle < 5:
            messages = consumer.consume(1000, timeout=1.0)
            idle = 0 if messages else idle + 1
            got += [(m.key(), dict(m.headers() or [])) for m in messages if m.error() is None]
    finally:
        consumer.close()
    return got


def drift_run(kafka, new_topic, spawn_writer, tmp_path, policy: str):  # type: ignore[no-untyped-def]
    """The table is made from the old shape; then records with a new nested and a new top-level field come."""
    topic = new_topic(PARTITIONS)
    table = f"drift.{policy}"
    config = writer_config(tmp_path / f"{policy}.yaml", kafka.bootstrap, topic, table, tmp_path / "wh",
                           table_settings={"json_drift": policy})
    produce(kafka.bootstrap, topic, OLD)
    writer = spawn_writer(config)
    iceberg = catalog_of(config)
    wait_committed(iceberg, table, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), writer=writer)
    produce(kafka.bootstrap, topic, NEW)
    wait_committed(iceberg, table, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), writer=writer)
    assert writer.stop() == 0, writer.log()
    assert_values_equal(audit_values_cli(config, topic, table))
    return iceberg, table, writer, topic


def test_json_drift_under_each_policy(kafka, new_topic, spawn_writer, tmp_path):
    iceberg, table, _, _ = drift_run(kafka, new_topic, spawn_writer, tmp_path, "evolve")
    rows = {r["n"]: r for r in iceberg.load_table(table).scan(selected_fields=("n", "s", "extra")).to_arrow()
            .to_pylist()}
    assert sorted(rows) == list(range(3000))
    assert rows[10] == {"n": 10, "s": {"a": 10, "b": None}, "extra": None}
    assert rows[2500] == {"n": 2500, "s": {"a": 2500, "b": "b2500"}, "extra": 5000}

    iceberg, table, _, topic = drift_run(kafka, new_topic, spawn_writer, tmp_path, "strict")
    assert "extra" not in iceberg.load_table(table).schema().column_names
    assert sorted(iceberg.load_table(table).scan(selected_fields=("n",)).to_arrow()["n"].to_pylist()) == \
        list(range(2000))
    letters = iceberg.load_table(dlq_identifier(table)).scan(selected_fields=("reason",)).to_arrow()["reason"]
    assert letters.to_pylist() == ["unknown_field"] * 1000
    # The fix: the table may now evolve; the dead letters replay into it, once.
    fixed = writer_config(tmp_path / "fixed.yaml", kafka.bootstrap, topic, table, tmp_path / "wh",
                          table_settings={"json_drift": "evolve"})
    replayed = subprocess.run([sys.executable, "-m", "tabletopic", "dlq", "replay", "--config", str(fixed),
                               "--table", table], capture_output=True, text=True, timeout=120)
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed: 1000 (appended 1000)" in replayed.stdout
    assert sorted(iceberg.load_table(table).scan(selected_fields=("n",)).to_arrow()["n"].to_pylist()) == \
        list(range(3000))
    assert iceberg.load_table(dlq_identifier(table)).scan().to_arrow().num_rows == 0
    assert_values_equal(audit_values_cli(fixed, topic, table))

    iceberg, table, writer, _ = drift_run(kafka, new_topic, spawn_writer, tmp_path, "ignore")
    loaded = iceberg.load_table(table)
    assert "extra" not in loaded.schema().column_names
    assert sorted(loaded.scan(selected_fields=("n",)).to_arrow()["n"].to_pylist()) == list(range(3000))
    assert not iceberg.table_exists(dlq_identifier(table))
    assert sum(e["records"] for e in writer.named("json.fields_ignored")) == 1000


def test_registry_down_for_20_s_makes_no_dead_letters_and_loses_nothing(
    kafka, registry, client, new_topic, spawn_writer, tmp_path
):
    topic = new_topic(PARTITIONS)
    table = "dlq.registry_outage"
    context = SerializationContext(topic, MessageField.VALUE)
    v1 = AvroSerializer(client, json.dumps(SCHEMA), conf={"auto.register.schemas": True})
    with_note = {**SCHEMA, "fields": [*SCHEMA["fields"], {"name": "note", "type": ["null", "string"], "default": None}]}
    v2 = AvroSerializer(client, json.dumps(with_note), conf={"auto.register.schemas": True})
    produce(kafka.bootstrap, topic, ((None, None, v1({"n": n, "memo": "a"}, context), None) for n in range(5000)))
    v2({"n": -1, "memo": "", "note": None}, context)  # registers v2 now; the writer meets it with the registry away
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "wh",
                           schema_registry={"url": registry.url, "properties": {"timeout": "3"}},
                           table_settings={"format": "avro"})
    writer = spawn_writer(config)
    iceberg = catalog_of(config)
    wait_committed(iceberg, table, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), writer=writer)

    registry.process.send_signal(signal.SIGSTOP)
    try:
        produce(kafka.bootstrap, topic, ((None, None, v2({"n": n, "memo": "b", "note": f"x{n}"}, context), None)
                                         for n in range(5000, 10000)))
        writer.wait_for("table.source_unavailable", timeout=60)
        time.sleep(20)
        assert writer.process.poll() is None, writer.log()
    finally:
        registry.process.send_signal(signal.SIGCONT)
    wait_committed(iceberg, table, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), timeout=180, writer=writer)
    assert writer.stop() == 0, writer.log()
    assert not iceberg.table_exists(dlq_identifier(table))
    assert writer.named("record.dead_letter") == []
    rows = iceberg.load_table(table).scan(selected_fields=("n", "note")).to_arrow().to_pylist()
    assert sorted(r["n"] for r in rows) == list(range(10000))
    assert all(r["note"] == (f"x{r['n']}" if r["n"] >= 5000 else None) for r in rows)
    assert_values_equal(audit_values_cli(config, topic, table))


def test_kill_9_around_dead_letter_commits_then_audit_passes(kafka, new_topic, spawn_writer, tmp_path):
    """Kills land right after a dead-letter commit, before the data commit that follows it."""
    records = 60_000
    topic = new_topic(PARTITIONS)
    table = "dlq.crash"
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "wh",
                           commit={"interval_seconds": 0.5}, consumer={"batch_size": 2000})

    def value(n: int) -> bytes:
        if n % 50 == 3:
            return b"{broken %d" % n
        return json.dumps({"n": f"n{n}" if n % 50 == 13 else n}).encode()  # a string in a long column

    producer = feed_slowly(kafka.bootstrap, topic, records, 3000, 1.0, value=value, key=lambda n: str(n).encode())
    rng = random.Random(11)
    for life in range(5):
        writer = spawn_writer(config)
        if life % 2 == 0:
            writer.wait_for("dead_letters.committed", timeout=120)
        else:
            writer.wait_for("commit.done", timeout=120)
            time.sleep(rng.uniform(0.0, 1.5))
        writer.kill()
    producer.join()
    final = spawn_writer(config)
    iceberg = catalog_of(config)
    wait_committed(iceberg, table, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), timeout=300, writer=final)
    assert final.stop() == 0, final.log()

    bad = [n for n in range(records) if n % 50 in (3, 13)]
    values = iceberg.load_table(table).scan(selected_fields=("n",)).to_arrow()["n"].to_pylist()
    assert sorted(values) == sorted(set(range(records)) - set(bad))
    letters = iceberg.load_table(dlq_identifier(table)).scan(selected_fields=("_kafka_key", "reason")).to_arrow()
    assert sorted(int(k) for k in letters["_kafka_key"].to_pylist()) == bad
    assert Counter(letters["reason"].to_pylist()) == {"malformed_json": len(bad) // 2, "type_mismatch": len(bad) // 2}
    assert_values_equal(audit_values_cli(config, topic, table))


def read_copies(bootstrap: str, topic: str, count: int) -> list[tuple[bytes | None, bytes | None, dict[str, bytes]]]:
    """The first `count` records of a one-partition topic: key, value, headers."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{topic}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    got: list[tuple[bytes | None, bytes | None, dict[str, bytes]]] = []
    deadline = time.monotonic() + 60
    try:
        while len(got) < count and time.monotonic() < deadline:
            got += [(m.key(), m.value(), dict(m.headers() or [])) for m in consumer.consume(10, timeout=1.0)
                    if m.error() is None]
    finally:
        consumer.close()
    return got


def run_with_copies(kafka, new_topic, spawn_writer, tmp_path, copies_topic: str, bad_value: bytes):  # type: ignore[no-untyped-def]
    """300 good JSON records around one bad one, in a table whose dead letters are copied to `copies_topic`."""
    topic = create_topic_with(kafka.bootstrap, f"big-{uuid.uuid4().hex[:10]}", 2, {"max.message.bytes": "3000000"})
    table = f"dlq.copies_{uuid.uuid4().hex[:6]}"
    produce(kafka.bootstrap, topic, [(n % 2, None, json.dumps({"n": n}).encode(), None) for n in range(150)])
    bad_offset = log_end(kafka.bootstrap, topic, 2)[(topic, 1)]
    produce_large(kafka.bootstrap, topic, [(1, b"bad", bad_value, None)], max_bytes=3_000_000)
    produce(kafka.bootstrap, topic, [(n % 2, None, json.dumps({"n": n}).encode(), None) for n in range(150, 300)])
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "wh",
                           table_settings={"dead_letter_topic": copies_topic})
    writer = spawn_writer(config)
    iceberg = catalog_of(config)
    wait_committed(iceberg, table, "tests", log_end(kafka.bootstrap, topic, 2), writer=writer)
    assert writer.process.poll() is None, writer.log()  # still running: no crash, no restart
    assert writer.stop() == 0, writer.log()
    values = iceberg.load_table(table).scan(selected_fields=("n",)).to_arrow()["n"].to_pylist()
    assert sorted(values) == list(range(300))
    [letter] = iceberg.load_table(dlq_identifier(table)).scan(
        selected_fields=("_kafka_offset", "_kafka_value", "reason")).to_arrow().to_pylist()
    # A value over 64 KiB is kept as its first 64 KiB (its length and digest in `message`).
    kept = bad_value if len(bad_value) <= MAX_KEPT_BYTES else bad_value[:MAX_KEPT_BYTES]
    assert letter == {"_kafka_offset": bad_offset, "_kafka_value": kept, "reason": "malformed_json"}
    assert_values_equal(audit_values_cli(config, topic, table))
    return writer, topic, bad_offset


def test_a_2_mb_dead_letter_goes_to_its_topic_truncated_and_the_writer_keeps_running(
    kafka, new_topic, spawn_writer, tmp_path
):
    copies_topic = new_topic(1)  # the broker's default limit, about 1 MB
    bad_value = b'{"n": 1, "pad": "' + b"x" * 2_000_000  # malformed (unterminated) and over 1 MB
    writer, _topic, bad_offset = run_with_copies(kafka, new_topic, spawn_writer, tmp_path, copies_topic, bad_value)
    assert writer.named("dead_letter_topic.truncated") == []  # the letter's 64 KiB prefix fits the producer
    [(key, value, headers)] = read_copies(kafka.bootstrap, copies_topic, 1)
    assert key == b"bad" and headers["tabletopic.truncated"] == str(len(bad_value)).encode()
    assert value == bad_value[:MAX_KEPT_BYTES]
    assert hashlib.sha256(bad_value).hexdigest().encode() in headers["tabletopic.message"]
    assert headers["tabletopic.offset"] == str(bad_offset).encode()


def test_a_copy_the_broker_refuses_is_reported_with_its_coordinates_and_sent_without_its_value(
    kafka, new_topic, spawn_writer, tmp_path
):
    copies_topic = create_topic_with(kafka.bootstrap, f"small-{uuid.uuid4().hex[:10]}", 1,
                                     {"max.message.bytes": "4000"})
    bad_value = b"{broken " + b"y" * 10_000
    writer, topic, bad_offset = run_with_copies(kafka, new_topic, spawn_writer, tmp_path, copies_topic, bad_value)
    [rejected] = writer.named("dead_letter_topic.rejected")
    assert (rejected["topic"], rejected["partition"], rejected["offset"]) == (topic, 1, bad_offset)
    assert rejected["reason"] == "MSG_SIZE_TOO_LARGE"
    [(key, value, headers)] = read_copies(kafka.bootstrap, copies_topic, 1)
    assert key == b"bad" and value is None
    assert headers["tabletopic.truncated"] == str(len(bad_value)).encode()
    assert headers["tabletopic.reason"] == b"malformed_json"


def test_a_dead_letter_flood_halts_its_table_alone_and_the_rest_is_read_again_after_a_restart(
    kafka, new_topic, spawn_writer, tmp_path
):
    flooded, calm = new_topic(1), new_topic(1)
    values = [b'{"n": 0}', b'{"n": 1}', *([b"poison"] * 20), b'{"n": 22}']  # poison at offsets 2..21
    produce(kafka.bootstrap, flooded, ((0, None, v, None) for v in values))
    produce(kafka.bootstrap, calm, ((0, None, json.dumps({"n": n}).encode(), None) for n in range(10)))
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, flooded, "-", tmp_path / "wh",
                           tables=[{"table": "flood.flooded", "topic": flooded, "max_dead_letters_per_minute": 5},
                                   {"table": "flood.calm", "topic": calm}])
    iceberg = catalog_of(config)
    for stops_at, letters in ((7, range(2, 7)), (12, range(2, 12))):
        writer = spawn_writer(config)
        halted = writer.wait_for("table.halted", timeout=60)
        assert (halted["table"], halted["reason"]) == ("flood.flooded", "dead_letter_flood"), halted
        assert f"{flooded}/0 offset {stops_at}" in halted["error"] and "max_dead_letters_per_minute (5)" in \
            halted["error"]
        wait_committed(iceberg, "flood.calm", "tests", {(calm, 0): 10}, timeout=60, writer=writer)  # goes on
        assert writer.stop() == 0, writer.log()
        assert len(writer.named("record.dead_letter")) == 1  # one line for the chunk, not one per record
        # What came before the record past the limit is committed; the halted rest is not lost: read again.
        assert table_offsets(iceberg.load_table("flood.flooded"), "tests") == {(flooded, 0): stops_at}
        letters_table = iceberg.load_table(dlq_identifier("flood.flooded")).scan().to_arrow()
        assert sorted(letters_table["_kafka_offset"].to_pylist()) == list(letters)
    assert sorted(iceberg.load_table("flood.flooded").scan().to_arrow()["n"].to_pylist()) == [0, 1]
