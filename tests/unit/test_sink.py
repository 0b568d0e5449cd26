"""TableSink against a real SQLite catalog: table creation per format, metadata columns on and off."""

import pyarrow as pa
import pytest
from pyiceberg.catalog.sql import SqlCatalog

from tabletopic.catalog.tables import create_table
from tabletopic.commit.retry import RetryPolicy
from tabletopic.config import TableConfig
from tabletopic.exceptions import RecordError
from tabletopic.kafka.records import RecordChunk
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


def test_a_first_record_that_is_bad_creates_no_table(catalog):
    json_sink = sink(catalog)
    with pytest.raises(RecordError) as caught:
        json_sink.ingest(chunk([b"not json", b'{"a": 1}'], first=7), now=0.0)
    assert (caught.value.topic, caught.value.partition, caught.value.offset) == ("topic", 0, 7)
    assert not catalog.table_exists("ns.t")


def test_good_records_before_a_bad_one_are_buffered(catalog):
    json_sink = sink(catalog)
    with pytest.raises(RecordError) as caught:
        json_sink.ingest(chunk([b'{"a": 1}', b'{"a": 2}', b'{"a": "x"}', b'{"a": 4}'], first=10), now=0.0)
    assert caught.value.offset == 12 and "type mismatch" in caught.value.reason
    outcome = json_sink.flush()
    assert outcome is not None and outcome.committed == {("topic", 0): 12}


def test_json_keys_that_differ_only_by_case_refuse_to_create_the_table(catalog):
    json_sink = sink(catalog)
    with pytest.raises(RecordError) as caught:
        json_sink.ingest(chunk([b'{"id": 1, "nested": {"Name": "a", "name": "b"}}'], first=3), now=0.0)
    assert caught.value.offset == 3
    assert "'nested.name'" in caught.value.reason and "only by case" in caught.value.reason
    assert not catalog.table_exists("ns.t")
