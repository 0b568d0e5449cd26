"""TableSink against a real SQLite catalog: table creation per format, metadata columns on and off."""

import pyarrow as pa
import pytest
from pyiceberg.catalog.sql import SqlCatalog

from tabletopic.catalog.tables import create_table
from tabletopic.config import TableConfig
from tabletopic.core.backoff import RetryPolicy
from tabletopic.core.records import RecordChunk
from tabletopic.deadletter.rows import dlq_identifier
from tabletopic.exceptions import RecordError
from tabletopic.sink import TableSink


@pytest.fixture
def catalog(tmp_path):
    return SqlCatalog("test", uri=f"sqlite:///{tmp_path}/catalog.db", warehouse=f"file://{tmp_path}")


def chunk(values, keys=None, first=0, partition=0):
    n = len(values)
    return RecordChunk("topic", partition, list(range(first, first + n)), keys or [None] * n, values,
                       [1767225600000 + i for i in range(n)], [[("h", b"v")]] + [None] * (n - 1))


def sink(catalog, **table):
    spec = TableConfig(**{"table": "ns.t", "topic": "topic", **table})
    return TableSink(spec, catalog, "g", "w", RetryPolicy())


def test_raw_without_metadata_columns_keeps_key_and_value_only(catalog):
    raw = sink(catalog, format="raw", metadata_columns=False)
    raw.ingest(chunk([b"\x00\x01", None], keys=[b"k", None]), now=0.0)
    raw.flush()
    table = catalog.load_table("ns.t")
    assert [f.name for f in table.schema().fields] == ["key", "value"]
    assert table.scan().to_arrow().to_pylist() == [{"key": b"k", "value": b"\x00\x01"}, {"key": None, "value": None}]


def test_json_metadata_columns_have_their_types_and_values(catalog):
    json_sink = sink(catalog, partition_by=["day(_kafka_timestamp)"])
    json_sink.ingest(chunk([b'{"a": 1}', b'{"a": 2}'], keys=[b"k1", b"k2"], first=40, partition=3), now=0.0)
    json_sink.flush()
    table = catalog.load_table("ns.t")
    types = {f.name: str(f.field_type) for f in table.schema().fields}
    assert types == {
        "a": "long", "_kafka_topic": "string", "_kafka_partition": "int", "_kafka_offset": "long",
        "_kafka_timestamp": "timestamptz", "_kafka_key": "binary", "_kafka_headers": "map<string, binary>",
    }
    assert table.spec().fields[0].name == "_kafka_timestamp_day"
    rows = table.scan().to_arrow().sort_by("_kafka_offset").to_pylist()
    assert [(r["a"], r["_kafka_partition"], r["_kafka_offset"], r["_kafka_key"]) for r in rows] == [
        (1, 3, 40, b"k1"), (2, 3, 41, b"k2")]
    assert rows[0]["_kafka_headers"] == [("h", b"v")] and rows[1]["_kafka_headers"] is None
    assert rows[0]["_kafka_timestamp"].isoformat() == "2026-01-01T00:00:00+00:00"


def test_json_into_an_existing_table_follows_its_schema_including_timestamps(catalog):
    schema = pa.schema([pa.field("at", pa.timestamp("us", tz="UTC")), pa.field("note", pa.string())])
    create_table(catalog, "ns.t", schema, [], {})
    existing = sink(catalog, metadata_columns=False)
    existing.ingest(chunk([b'{"at": "2026-05-01T12:00:00Z", "note": "x", "unknown": 1}']), now=0.0)
    existing.flush()
    row = catalog.load_table("ns.t").scan().to_arrow().to_pylist()[0]
    assert row["at"].isoformat() == "2026-05-01T12:00:00+00:00" and row["note"] == "x"


def test_with_errors_fail_a_bad_first_record_is_named(catalog):
    json_sink = sink(catalog, errors="fail")
    with pytest.raises(RecordError) as caught:
        json_sink.ingest(chunk([b"not json", b'{"a": 1}'], first=7), now=0.0)
    assert (caught.value.topic, caught.value.partition, caught.value.offset) == ("topic", 0, 7)
    assert "malformed_json" in caught.value.reason


def test_with_errors_fail_good_records_before_a_bad_one_are_buffered(catalog):
    json_sink = sink(catalog, errors="fail")
    with pytest.raises(RecordError) as caught:
        json_sink.ingest(chunk([b'{"a": 1}', b'{"a": 2}', b'{"a": "x"}', b'{"a": 4}'], first=10), now=0.0)
    assert caught.value.offset == 12 and "type mismatch" in caught.value.reason
    outcome = json_sink.flush()
    assert outcome is not None and outcome.committed == {("topic", 0): 12}


def test_json_keys_that_differ_only_by_case_refuse_to_create_the_table(catalog):
    json_sink = sink(catalog, errors="fail")
    with pytest.raises(RecordError) as caught:
        json_sink.ingest(chunk([b'{"id": 1, "nested": {"Name": "a", "name": "b"}}'], first=3), now=0.0)
    assert caught.value.offset == 3
    assert "'nested.name'" in caught.value.reason and "only by case" in caught.value.reason
    assert not catalog.table_exists("ns.t")


def rows_of(catalog, name, *columns):
    return sorted(catalog.load_table(name).scan(selected_fields=columns).to_arrow().to_pylist(),
                  key=lambda r: r["_kafka_offset"])


def test_dead_letters_commit_with_their_reason_and_their_offsets_count_as_consumed(catalog):
    json_sink = sink(catalog, max_record_bytes=100)
    values = [b'{"a": 1}', b"oops", b'{"a": "x"}', b'{"a": 4}', b'{"a": 5, "pad": "' + b"x" * 200 + b'"}', b"[1]"]
    json_sink.ingest(chunk(values, first=20), now=0.0)
    outcome = json_sink.flush()
    assert outcome is not None and outcome.committed == {("topic", 0): 26}
    assert [(r["a"], r["_kafka_offset"]) for r in rows_of(catalog, "ns.t", "a", "_kafka_offset")] == [(1, 20), (4, 23)]
    letters = rows_of(catalog, dlq_identifier("ns.t"), "_kafka_offset", "reason", "_kafka_value")
    assert [(r["_kafka_offset"], r["reason"]) for r in letters] == [
        (21, "malformed_json"), (22, "type_mismatch"), (24, "oversized"), (25, "malformed_json")]
    assert letters[0]["_kafka_value"] == b"oops"
    assert json_sink.bad_records["malformed_json"] == 2


def test_dead_letters_read_again_after_a_crash_are_not_doubled(catalog):
    values = [b'{"a": 1}', b"oops", b'{"a": 3}']
    first = sink(catalog)
    first.ingest(chunk(values, first=0), now=0.0)
    first.writer._commit_dead_letters(first.dead_letters.take())  # then the process dies before the data commit
    again = sink(catalog)
    again.ingest(chunk([*values, b"again bad", b'{"a": 5}'], first=0), now=0.0)
    again.flush()
    letters = rows_of(catalog, dlq_identifier("ns.t"), "_kafka_offset", "reason")
    assert [r["_kafka_offset"] for r in letters] == [1, 3]
    assert [r["a"] for r in rows_of(catalog, "ns.t", "a", "_kafka_offset")] == [1, 3, 5]


def test_skip_drops_bad_records_and_moves_on(catalog):
    json_sink = sink(catalog, errors="skip")
    json_sink.ingest(chunk([b'{"a": 1}', b"oops"], first=0), now=0.0)
    assert json_sink.flush().committed == {("topic", 0): 2}
    assert not catalog.table_exists(dlq_identifier("ns.t"))


def test_new_nested_fields_evolve_the_table_and_rows_buffered_before_follow(catalog):
    json_sink = sink(catalog)
    json_sink.ingest(chunk([b'{"a": 1, "s": {"x": 1}}'], first=0), now=0.0)
    json_sink.ingest(chunk([b'{"a": 2, "s": {"x": 2, "y": "new"}, "b": true}'], first=1), now=0.0)
    json_sink.flush()
    table = catalog.load_table("ns.t")
    assert [f.name for f in table.schema().find_field("s").field_type.fields] == ["x", "y"]
    rows = rows_of(catalog, "ns.t", "a", "s", "b", "_kafka_offset")
    assert [(r["a"], r["s"], r["b"]) for r in rows] == [(1, {"x": 1, "y": None}, None), (2, {"x": 2, "y": "new"}, True)]


def test_a_null_for_a_required_column_is_a_dead_letter(catalog):
    from pyiceberg.schema import Schema
    from pyiceberg.types import LongType, NestedField

    catalog.create_namespace("ns")
    catalog.create_table("ns.t", Schema(NestedField(1, "id", LongType(), required=True),
                                        NestedField(2, "v", LongType(), required=False)))
    json_sink = sink(catalog, metadata_columns=False)
    json_sink.ingest(chunk([b'{"id": 1, "v": 1}', b'{"v": 2}'], first=0), now=0.0)
    assert json_sink.bad_records == {"null_required": 1}
    json_sink.flush()
    assert catalog.load_table("ns.t").scan().to_arrow().to_pylist() == [{"id": 1, "v": 1}]


def test_a_first_batch_of_bad_records_only_still_moves_the_offsets(catalog):
    json_sink = sink(catalog, max_record_bytes=10)
    json_sink.ingest(chunk([b'{"a": "far too long"}', b'{"a": "also too long"}'], first=5), now=0.0)
    assert json_sink.flush().committed == {("topic", 0): 7}
    assert rows_of(catalog, dlq_identifier("ns.t"), "reason", "_kafka_offset") == [
        {"reason": "oversized", "_kafka_offset": 5}, {"reason": "oversized", "_kafka_offset": 6}]


def test_lowercase_column_names_fold_keys_into_one_column_and_keep_map_keys(catalog):
    json_sink = sink(catalog, column_names="lowercase")
    json_sink.ingest(chunk([b'{"UserId": 1, "Address": {"City": "x"}}'], first=0), now=0.0)
    json_sink.ingest(chunk([b'{"userID": 2, "ADDRESS": {"city": "y", "Zip": 3}}', b'{"userid": 3, "UserId": 4}'],
                           first=1), now=0.0)
    json_sink.flush()
    table = catalog.load_table("ns.t")
    assert [f.name for f in table.schema().fields][:2] == ["userid", "address"]
    rows = rows_of(catalog, "ns.t", "userid", "address", "_kafka_offset")
    assert [(r["userid"], r["address"]) for r in rows] == [(1, {"city": "x", "zip": None}),
                                                          (2, {"city": "y", "zip": 3})]
    letters = rows_of(catalog, dlq_identifier("ns.t"), "reason", "message", "_kafka_offset")
    assert [(r["_kafka_offset"], r["reason"]) for r in letters] == [(2, "incompatible_schema")]
    assert "'userid' and 'UserId' differ only by case" in letters[0]["message"]


def test_lowercase_keeps_the_keys_of_map_columns(catalog):
    create_table(catalog, "ns.t", pa.schema([pa.field("tags", pa.map_(pa.string(), pa.string()))]), [], {})
    json_sink = sink(catalog, column_names="lowercase", metadata_columns=False)
    json_sink.ingest(chunk([b'{"Tags": {"Env": "Prod"}}']), now=0.0)
    json_sink.flush()
    assert catalog.load_table("ns.t").scan().to_arrow().to_pylist() == [{"tags": [("Env", "Prod")]}]


def test_an_avro_writer_schema_fastavro_cannot_read_is_a_dead_letter_not_a_crash(catalog):
    """A registry schema with a reference to another subject (fastavro: UnknownType) used to raise out of
    decode on every retry: a crash loop."""
    import json
    import struct

    from confluent_kafka.schema_registry import Schema, SchemaReference

    from tabletopic.decode.avro import WriterSchemas
    from tabletopic.kafka.registry import SchemaRegistry

    registry = SchemaRegistry("mock://sink-references")
    line = {"type": "record", "name": "Line", "fields": [{"name": "sku", "type": "string"}]}
    registry._client.register_schema("line-value", Schema(json.dumps(line), "AVRO"))
    order = {"type": "record", "name": "Order", "fields": [{"name": "line", "type": "Line"}]}
    referencing = registry._client.register_schema(
        "topic-value", Schema(json.dumps(order), "AVRO", [SchemaReference("Line", "line-value", 1)]))
    plain = registry._client.register_schema(
        "plain-value", Schema(json.dumps({"type": "record", "name": "P", "fields": [{"name": "n", "type": "long"}]}),
                              "AVRO"))
    spec = TableConfig(table="ns.t", topic="topic", format="avro")
    avro_sink = TableSink(spec, catalog, "g", "w", RetryPolicy(), writer_schemas=WriterSchemas(registry))
    avro_sink.ingest(chunk([struct.pack(">bI", 0, referencing) + b"\x02a", struct.pack(">bI", 0, plain) + b"\x0e"]),
                     now=0.0)
    assert avro_sink.flush().committed == {("topic", 0): 2}
    assert rows_of(catalog, "ns.t", "n", "_kafka_offset") == [{"n": 7, "_kafka_offset": 1}]
    letters = rows_of(catalog, dlq_identifier("ns.t"), "reason", "message", "_kafka_offset")
    assert [(r["_kafka_offset"], r["reason"]) for r in letters] == [(0, "incompatible_schema")]
    assert "schema references are not supported" in letters[0]["message"]
