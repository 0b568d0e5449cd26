"""An upsert table's sink on a real SQLite catalog, without a broker: the review's cases of keys that must
never delete another key, crash a worker, or pile up in memory."""

from __future__ import annotations

import json

import pytest

from tabletopic.catalog import reader
from tabletopic.config import TableConfig
from tabletopic.core.backoff import RetryPolicy
from tabletopic.core.records import RecordChunk
from tabletopic.deadletter.rows import dlq_identifier
from tabletopic.exceptions import ConfigError
from tabletopic.sink import TableSink
from tests.iceberg_fixtures import sql_catalog


def chunk(keys, values, first=0):
    n = len(values)
    return RecordChunk("topic", 0, list(range(first, first + n)), keys, values,
                       [1767225600000 + i for i in range(n)], [None] * n)


def j(value) -> bytes:
    return json.dumps(value).encode()


@pytest.fixture
def catalog(tmp_path):
    return sql_catalog(tmp_path)


def sink(catalog, **settings) -> TableSink:
    spec = TableConfig(**{"table": "ns.t", "topic": "topic", "mode": "upsert", **settings})
    return TableSink(spec, catalog, "g", "w", RetryPolicy(deadline_s=2))


def state(catalog, *columns):
    return sorted(tuple(r[c] for c in columns) for r in reader.read(catalog.load_table("ns.t")).to_pylist())


def letters(catalog):
    if not catalog.table_exists(dlq_identifier("ns.t")):
        return []
    table = catalog.load_table(dlq_identifier("ns.t")).scan().to_arrow().sort_by("_kafka_offset")
    return [(r["_kafka_offset"], r["reason"]) for r in table.to_pylist()]


def test_a_first_batch_tombstone_is_typed_by_the_keys_that_create_the_table(catalog):
    writer = sink(catalog)
    writer.ingest(chunk([j({"id": "a"}), j({"id": 1})], [None, j({"id": 1, "v": "x"})]), now=0.0)
    writer.flush()
    assert state(catalog, "id", "v") == [(1, "x")]
    assert letters(catalog) == [(0, "type_mismatch")]


@pytest.mark.parametrize("tombstone_key, ids", [
    ({"id": "zz"}, [1, 2]),  # crashed the worker on every restart (an Arrow cast of the decoded key)
    ({"id": True}, [1, 2]),  # deleted key 1
])
def test_a_value_keyed_tombstone_deletes_only_a_key_of_the_columns_type(catalog, tombstone_key, ids):
    writer = sink(catalog, key=["id"])
    writer.ingest(chunk([None, None], [j({"id": 1, "v": "x"}), j({"id": 2, "v": "y"})]), now=0.0)
    writer.flush()
    writer.ingest(chunk([j(tombstone_key)], [None], first=2), now=1.0)
    writer.flush()
    assert [i for i, _ in state(catalog, "id", "v")] == ids
    assert letters(catalog) == [(2, "type_mismatch")]


def test_a_string_key_column_is_not_deleted_by_a_number(catalog):
    writer = sink(catalog, key=["id"])
    writer.ingest(chunk([None, None], [j({"id": "5", "v": "x"}), j({"id": "6", "v": "y"})]), now=0.0)
    writer.flush()
    writer.ingest(chunk([j({"id": 5})], [None], first=2), now=1.0)
    writer.flush()
    assert state(catalog, "id", "v") == [("5", "x"), ("6", "y")]


def test_dead_letters_of_a_table_not_created_yet_are_committed_not_held(catalog):
    writer = sink(catalog)
    for n in range(3):
        writer.ingest(chunk([None] * 100, [j({"id": i}) for i in range(100)], first=n * 100), now=float(n))
    assert writer.is_flush_due(100.0, 1.0, 1 << 30)
    assert writer.flush() is None  # no table for offsets yet
    assert writer.dead_letters.nbytes == 0
    assert len(letters(catalog)) == 300
    assert not catalog.table_exists("ns.t")


def test_a_value_field_named_like_the_hidden_flag_is_only_a_column(catalog):
    writer = sink(catalog)
    writer.ingest(chunk([j({"id": 1}), j({"id": 2})], [j({"id": 1, "__tabletopic_delete": True}), j({"id": 2})]),
                  now=0.0)
    writer.flush()
    assert state(catalog, "id", "__tabletopic_delete") == [(1, True), (2, None)]


def test_another_key_format_on_an_existing_table_is_refused(catalog):
    writer = sink(catalog)
    writer.ingest(chunk([j("abc")], [j({"v": "old"})]), now=0.0)
    writer.flush()
    with pytest.raises(ConfigError, match="key_format='json'"):
        sink(catalog, key_format="string")


def test_lowercase_folds_the_key_fields_as_the_value_fields(catalog):
    writer = sink(catalog, column_names="lowercase")
    writer.ingest(chunk([j({"ID": 1}), j({"ID": 1})], [j({"ID": 1, "V": "x"}), j({"ID": 1, "V": "y"})]), now=0.0)
    writer.flush()
    assert state(catalog, "id", "v") == [(1, "y")]


def test_a_debezium_delete_without_a_key_never_chooses_the_key_columns(catalog):
    writer = sink(catalog, mode=None, envelope="debezium")
    delete = j({"op": "d", "before": {"id": 2, "name": "b"}, "after": None})
    writer.ingest(chunk([None, j({"id": 3})], [delete, j({"op": "c", "after": {"id": 3, "name": "c"}})]), now=0.0)
    writer.flush()
    table = catalog.load_table("ns.t")
    assert [table.schema().find_column_name(i) for i in table.schema().identifier_field_ids] == ["id"]
    assert letters(catalog) == []  # the batch named the key columns: `before` is cut to them
    writer = sink(catalog, mode=None, envelope="debezium")
    writer.ingest(chunk([None], [delete], first=2), now=1.0)
    writer.flush()
    assert state(catalog, "id", "name") == [(3, "c")]


def test_a_first_batch_delete_with_no_key_anywhere_is_a_dead_letter(catalog):
    writer = sink(catalog, mode=None, envelope="debezium")
    writer.ingest(chunk([None], [j({"op": "d", "before": {"id": 2, "name": "b"}, "after": None})]), now=0.0)
    writer.flush()
    assert letters(catalog) == [(0, "missing_key")]
    assert not catalog.table_exists("ns.t")


def _with_schema(op: str, after: dict, fields: list[dict]) -> bytes:
    schema = {"type": "struct", "fields": [{"type": "struct", "field": "after", "fields": fields},
                                           {"type": "string", "field": "op"}]}
    return j({"schema": schema, "payload": {"op": op, "after": after, "before": None}})


DECIMAL_ID = {"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "parameters": {"scale": "0"},
              "field": "id"}
TIMESTAMP = {"type": "int64", "name": "io.debezium.time.Timestamp", "field": "ts"}


def test_a_decimal_primary_key_stays_in_the_form_its_kafka_key_has(catalog):
    writer = sink(catalog, mode=None, envelope="debezium")
    value = _with_schema("c", {"id": "AQ==", "v": "x"}, [DECIMAL_ID, {"type": "string", "field": "v"}])
    writer.ingest(chunk([j({"id": "AQ=="})], [value]), now=0.0)
    writer.flush()
    assert state(catalog, "id", "v") == [("AQ==", "x")]
    assert letters(catalog) == []


def test_a_column_first_made_of_bare_numbers_keeps_taking_them(catalog):
    writer = sink(catalog, mode=None, envelope="debezium")
    writer.ingest(chunk([j({"id": 1})], [j({"op": "c", "after": {"id": 1, "ts": 5}})]), now=0.0)
    writer.flush()
    later = _with_schema("u", {"id": 1, "ts": 6}, [{"type": "int64", "field": "id"}, TIMESTAMP])
    writer.ingest(chunk([j({"id": 1})], [later], first=1), now=1.0)
    writer.flush()
    assert state(catalog, "id", "ts") == [(1, 6)]
    assert letters(catalog) == []


def test_a_schema_that_cannot_read_its_value_makes_a_dead_letter_not_a_crash(catalog):
    writer = sink(catalog, mode=None, envelope="debezium")
    hostile = dict(DECIMAL_ID, field="p", parameters={"scale": "100000000"})
    values = [_with_schema("c", {"id": 1, "p": "AQ=="}, [{"type": "int64", "field": "id"}, hostile]),
              j({"op": "c", "after": {"id": 2, "p": "2"}})]
    writer.ingest(chunk([j({"id": 1}), j({"id": 2})], values), now=0.0)
    writer.flush()
    assert state(catalog, "id", "p") == [(2, "2")]
    assert letters(catalog) == [(0, "bad_envelope")]
