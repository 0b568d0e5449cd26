"""rename_columns through a table's sink (local SQLite catalog): JSON and Avro fields under their new column
names, with `column_names: lowercase`, as an upsert key, and a collision as a dead letter `rename_collision`."""

from __future__ import annotations

import json
import struct
from typing import Any

import pyarrow as pa
import pytest
from pyiceberg.catalog.sql import SqlCatalog

from tabletopic.catalog import reader
from tabletopic.catalog.tables import create_table
from tabletopic.config import TableConfig
from tabletopic.core.backoff import RetryPolicy
from tabletopic.core.records import RecordChunk
from tabletopic.deadletter.rows import dlq_identifier
from tabletopic.decode.avro import WriterSchemas
from tabletopic.kafka.registry import SchemaRegistry
from tabletopic.sink import TableSink


@pytest.fixture
def catalog(tmp_path: Any) -> SqlCatalog:
    return SqlCatalog("test", uri=f"sqlite:///{tmp_path}/catalog.db", warehouse=f"file://{tmp_path}")


def chunk(values: list[bytes | None], keys: list[bytes | None] | None = None) -> RecordChunk:
    n = len(values)
    return RecordChunk("topic", 0, list(range(n)), keys or [None] * n, values, [0] * n, [None] * n)


def sink(catalog: SqlCatalog, writer_schemas: WriterSchemas | None = None, **table: Any) -> TableSink:
    spec = TableConfig(**{"table": "ns.t", "topic": "topic", **table})
    return TableSink(spec, catalog, "g", "w", RetryPolicy(), writer_schemas=writer_schemas)


def letters(catalog: SqlCatalog) -> list[tuple[int, str]]:
    rows = catalog.load_table(dlq_identifier("ns.t")).scan().to_arrow()
    return sorted(zip(rows["_kafka_offset"].to_pylist(), rows["reason"].to_pylist(), strict=True))


def test_json_renames_after_folding_and_keeps_the_keys_of_a_renamed_map_column(catalog: SqlCatalog) -> None:
    # (A table with a map column takes the per-record JSON path, which adds no columns: `user` is made here.)
    create_table(catalog, "ns.t", pa.schema([pa.field("labels", pa.map_(pa.string(), pa.string())),
                                             pa.field("user", pa.int64())]), [], {})
    json_sink = sink(catalog, column_names="lowercase", metadata_columns=False,
                     rename_columns={"Tags": "labels", "UserId": "user"})
    json_sink.ingest(chunk([b'{"TAGS": {"Env": "Prod"}, "userID": 1}', b'{"tags": {}, "User": 2, "userid": 3}']),
                     now=0.0)
    json_sink.flush()
    assert catalog.load_table("ns.t").scan().to_arrow().to_pylist() == [{"labels": [("Env", "Prod")], "user": 1}]
    assert letters(catalog) == [(1, "rename_collision")]


def test_an_upsert_key_names_the_renamed_column(catalog: SqlCatalog) -> None:
    json_sink = sink(catalog, mode="upsert", key=["uid"], rename_columns={"user_id": "uid"})
    json_sink.ingest(chunk([b'{"user_id": 1, "v": "a"}', b'{"user_id": 2, "v": "b"}', b'{"user_id": 1, "v": "c"}']),
                     now=0.0)
    json_sink.flush()
    table = catalog.load_table("ns.t")
    assert [table.schema().find_column_name(i) for i in table.schema().identifier_field_ids] == ["uid"]
    rows = reader.read(table, columns=("uid", "v")).sort_by("uid").to_pylist()
    assert rows == [{"uid": 1, "v": "c"}, {"uid": 2, "v": "b"}]


def test_an_upsert_tables_json_kafka_key_is_renamed_as_its_value(catalog: SqlCatalog) -> None:
    json_sink = sink(catalog, mode="upsert", rename_columns={"user_id": "uid"})
    json_sink.ingest(chunk([b'{"user_id": 1, "v": "a"}', None],
                           keys=[b'{"user_id": 1}', b'{"schema": null, "payload": {"user_id": 9}}']), now=0.0)
    json_sink.flush()
    table = catalog.load_table("ns.t")
    assert [table.schema().find_column_name(i) for i in table.schema().identifier_field_ids] == ["uid"]
    assert reader.read(table, columns=("uid", "v")).to_pylist() == [{"uid": 1, "v": "a"}]


def _avro(registry: SchemaRegistry, subject: str, fields: list[dict[str, Any]]) -> int:
    from confluent_kafka.schema_registry import Schema

    schema = {"type": "record", "name": "R", "fields": fields}
    return int(registry._client.register_schema(subject, Schema(json.dumps(schema), "AVRO")))


def test_a_new_avro_table_whose_first_schema_collides_dead_letters_its_records(catalog: SqlCatalog) -> None:
    registry = SchemaRegistry("mock://rename-sink")
    both = _avro(registry, "both-value", [{"name": "id", "type": "long"}, {"name": "key", "type": "long"}])
    plain = _avro(registry, "plain-value", [{"name": "id", "type": "long"}])
    avro_sink = sink(catalog, WriterSchemas(registry), format="avro", rename_columns={"id": "key"})
    # zigzag varints: 1 -> 0x02, 2 -> 0x04, 3 -> 0x06
    avro_sink.ingest(chunk([struct.pack(">bI", 0, both) + b"\x02\x04", struct.pack(">bI", 0, plain) + b"\x06"]),
                     now=0.0)
    outcome = avro_sink.flush()
    assert outcome is not None and outcome.committed == {("topic", 0): 2}
    assert catalog.load_table("ns.t").scan().to_arrow()["key"].to_pylist() == [3]
    assert letters(catalog) == [(0, "rename_collision")]


def _change(op: str, before: dict[str, Any] | None, after: dict[str, Any] | None) -> bytes:
    return json.dumps({"op": op, "before": before, "after": after, "source": {}}).encode()


def test_debezium_after_before_and_key_fields_are_renamed(catalog: SqlCatalog) -> None:
    cdc_sink = sink(catalog, envelope="debezium", rename_columns={"id": "uid"})
    cdc_sink.ingest(chunk([_change("c", None, {"id": 1, "v": "a"}), _change("c", None, {"id": 2, "v": "b"})],
                          keys=[b'{"id": 1}', b'{"id": 2}']), now=0.0)
    cdc_sink.flush()
    table = catalog.load_table("ns.t")
    assert [table.schema().find_column_name(i) for i in table.schema().identifier_field_ids] == ["uid"]
    assert "id" not in table.schema().as_arrow().names
    # A delete without a Kafka key takes its key from `before`, under the source name.
    cdc_sink.ingest(RecordChunk("topic", 0, [2], [None], [_change("d", {"id": 1, "v": "a"}, None)], [0], [None]),
                    now=0.0)
    cdc_sink.flush()
    rows = reader.read(catalog.load_table("ns.t"), columns=("uid", "v")).to_pylist()
    assert rows == [{"uid": 2, "v": "b"}]
