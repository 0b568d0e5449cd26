"""Hostile JSON (tests/hostile/json) among good records through `tabletopic run`: every good record lands with
its value, every hostile one is a dead letter with its reason, the writer never dies, and the table takes
commits after them (issue 15)."""

from __future__ import annotations

import json

import pyarrow as pa

from tabletopic.catalog.tables import TABLE_PROPERTIES, table_schema
from tabletopic.deadletter.rows import dlq_identifier
from tabletopic.decode.json_guard import name_problem
from tests.hostile import field_names, payloads
from tests.support import catalog_of, log_end, produce, wait_committed, writer_config

HOSTILE = payloads("json")
MAP_SCHEMA = pa.schema([pa.field("id", pa.int64()), pa.field("m", pa.map_(pa.string(), pa.int64()))])
MAP_HOSTILE = {
    "type_mismatch--id_above_int64": b'{"id": 9223372036854775808, "m": {"a": 1}}',
    "type_mismatch--map_value_above_int64": b'{"id": 1, "m": {"a": 18446744073709551616}}',
    "too_deep--map_value": b'{"id": 1, "m": {"a": ' + b"[" * 20000 + b"]" * 20000 + b"}}",
}


def good(n: int) -> bytes:
    return json.dumps({"id": n, "name": f"g{n}", "prénom nom-x": f"p{n}"}, ensure_ascii=False).encode()


def test_hostile_json_becomes_dead_letters_and_the_table_keeps_taking_commits(
    kafka, new_topic, spawn_writer, tmp_path
):
    topic, map_topic = new_topic(2), new_topic(1)
    table, map_table = "hostile.events", "hostile.with_map"
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "wh",
                           tables=[{"table": table, "topic": topic}, {"table": map_table, "topic": map_topic}])
    iceberg = catalog_of(config)
    iceberg.create_namespace_if_not_exists("hostile")
    iceberg.create_table(map_table, schema=table_schema(MAP_SCHEMA, True), properties=TABLE_PROPERTIES)

    # The hostile records come first, among the good ones: the first batch creates the table.
    first: list[tuple[int | None, bytes | None, bytes | None, None]] = []
    for n, payload in enumerate(HOSTILE):
        first += [(n % 2, None, good(n), None), (n % 2, payload.name.encode(), payload.value, None)]
    produce(kafka.bootstrap, topic, first)
    map_records = [(0, None, json.dumps({"id": n, "m": {"a": n}}).encode(), None) for n in range(3)]
    map_records[1:1] = [(0, name.encode(), value, None) for name, value in MAP_HOSTILE.items()]
    produce(kafka.bootstrap, map_topic, map_records)

    writer = spawn_writer(config)
    wait_committed(iceberg, table, "tests", log_end(kafka.bootstrap, topic, 2), timeout=120, writer=writer)
    wait_committed(iceberg, map_table, "tests", log_end(kafka.bootstrap, map_topic, 1), timeout=120, writer=writer)

    # After them, good records (one with a new field) still commit to both tables.
    later = range(len(HOSTILE), len(HOSTILE) + 20)
    produce(kafka.bootstrap, topic, [(n % 2, None, good(n), None) for n in later])
    produce(kafka.bootstrap, topic, [(0, None, b'{"id": 1000, "added": "after"}', None)])
    produce(kafka.bootstrap, map_topic, [(0, None, b'{"id": 7, "m": {"b": 2}}', None)])
    wait_committed(iceberg, table, "tests", log_end(kafka.bootstrap, topic, 2), timeout=120, writer=writer)
    wait_committed(iceberg, map_table, "tests", log_end(kafka.bootstrap, map_topic, 1), timeout=120, writer=writer)
    assert writer.process.poll() is None, writer.log()  # never died, never restarted
    assert writer.stop() == 0, writer.log()
    assert not writer.named("supervisor.worker_died") and not writer.named("supervisor.worker_failed")

    rows = iceberg.load_table(table).scan().to_arrow()
    assert all(name_problem(name) is None for name in field_names(pa.struct(list(rows.schema))))
    assert "big" not in rows.column_names  # an integer past int64 made no double column
    landed = {r["id"]: r for r in rows.to_pylist()}
    assert sorted(landed) == [*range(len(HOSTILE)), *later, 1000]
    assert all(landed[n]["name"] == f"g{n}" and landed[n]["prénom nom-x"] == f"p{n}" for n in range(len(HOSTILE)))
    assert landed[1000]["added"] == "after"

    letters = iceberg.load_table(dlq_identifier(table)).scan(
        selected_fields=("_kafka_key", "reason", "message", "_kafka_value")).to_arrow().to_pylist()
    by_name = {letter["_kafka_key"].decode(): letter for letter in letters}
    assert len(letters) == len(HOSTILE)
    for payload in HOSTILE:
        letter = by_name[payload.name]
        assert letter["reason"] == payload.reason, (payload.name, letter["message"])
        if len(payload.value) < 1000:
            assert letter["_kafka_value"] == payload.value

    map_rows = iceberg.load_table(map_table).scan().to_arrow().to_pylist()
    assert sorted((r["id"], dict(r["m"])) for r in map_rows) == [(0, {"a": 0}), (1, {"a": 1}), (2, {"a": 2}),
                                                                  (7, {"b": 2})]
    map_letters = iceberg.load_table(dlq_identifier(map_table)).scan(
        selected_fields=("_kafka_key", "reason")).to_arrow().to_pylist()
    assert sorted((letter["_kafka_key"].decode(), letter["reason"]) for letter in map_letters) == sorted(
        (name, name.partition("--")[0]) for name in MAP_HOSTILE)
