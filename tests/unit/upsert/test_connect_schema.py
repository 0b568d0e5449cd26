"""Kafka Connect's embedded schema → declared column types and JSON-ready values, on Debezium's own output."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from tabletopic.upsert.connect_schema import BadLogicalValue, arrow_schema, arrow_type, json_ready, row_fields

FIXTURES = Path(__file__).parent / "fixtures"


def test_a_real_debezium_envelope_declares_its_columns():
    records = json.loads((FIXTURES / "debezium-postgres-value-schemas.json").read_text())["records"]
    value = json.loads(next(r["value"] for r in records if r["value"]))
    fields = row_fields(value["schema"])
    assert fields is not None
    assert arrow_schema(fields) == pa.schema([
        pa.field("id", pa.int32()), pa.field("name", pa.string()), pa.field("amount", pa.string()),
        pa.field("at", pa.timestamp("us", tz="UTC"))])


def test_logical_types_become_what_their_column_parses():
    fields = [
        {"type": "int32", "name": "io.debezium.time.Date", "field": "d"},
        {"type": "int64", "name": "io.debezium.time.Timestamp", "field": "ms"},
        {"type": "int64", "name": "io.debezium.time.MicroTimestamp", "field": "us"},
        {"type": "int64", "name": "io.debezium.time.NanoTimestamp", "field": "ns"},
        {"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "parameters": {"scale": "2"},
         "field": "price"},
        {"type": "int16", "field": "small"},
        {"type": "bytes", "field": "blob"},
    ]
    assert [arrow_type(f) for f in fields] == [pa.date32(), pa.timestamp("us"), pa.timestamp("us"), pa.int64(),
                                               pa.string(), pa.int32(), None]
    row = {"d": 19000, "ms": 1_700_000_000_123, "us": 1_700_000_000_123_456, "ns": 5,
           "price": "MNE=",  # 0x30D1 = 12497 unscaled
           "small": 3, "blob": "AAE="}
    assert json_ready(row, fields, {}) == {
        "d": 19000, "ms": "2023-11-14T22:13:20.123000", "us": "2023-11-14T22:13:20.123456", "ns": 5,
        "price": "124.97", "small": 3, "blob": "AAE="}
    negative = json_ready({"price": "/w=="}, fields[4:5], {})  # 0xFF = -1 unscaled
    assert negative == {"price": "-0.01"}
    big = {"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "parameters": {"scale": "-3"},
           "field": "price"}
    assert json_ready({"price": "AQ=="}, [big], {}) == {"price": "1000"}  # plain text, not 1E+3


def test_values_not_of_the_declared_form_are_left_to_the_decoder():
    fields = [{"type": "int64", "name": "io.debezium.time.Timestamp", "field": "ts"}]
    assert json_ready({"ts": "yesterday"}, fields, {}) == {"ts": "yesterday"}
    assert json_ready({"ts": None}, fields, {}) == {"ts": None}
    assert row_fields({"fields": [{"field": "after", "type": "string"}]}) is None
    assert row_fields(None) is None


def test_a_column_made_of_the_bare_numbers_keeps_them_and_key_fields_stay_as_the_key_has_them():
    fields = [{"type": "int64", "name": "io.debezium.time.Timestamp", "field": "ts"},
              {"type": "int64", "name": "io.debezium.time.Timestamp", "field": "id"}]
    assert json_ready({"ts": 5, "id": 7}, fields, {"ts": pa.int64()}, keep={"id"}) == {"ts": 5, "id": 7}
    assert json_ready({"ts": 5}, fields, {"ts": pa.timestamp("us")}) == {"ts": "1970-01-01T00:00:00.005000"}


@pytest.mark.parametrize("parameters, value", [
    ({"scale": "100000000"}, "AQ=="), ({"scale": None}, "AQ=="), ({"scale": [1]}, "AQ=="), ("junk", 5),
    ({"scale": "2"}, "not base64!"), ({"scale": "x"}, "AQ=="),
])
def test_a_decimal_its_schema_cannot_read_is_refused_never_stored_raw(parameters, value):
    field = {"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "parameters": parameters,
             "field": "p"}
    with pytest.raises(BadLogicalValue):
        json_ready({"p": value}, [field], {})


def test_a_hostile_schema_declares_nothing_rather_than_raising():
    assert arrow_type({"type": ["int32"], "name": ["x"]}) is None
    assert arrow_type({"type": "struct", "fields": "nope"}) is None
    assert arrow_schema([{"field": "a", "type": {"nested": 1}}, {"field": 3, "type": "int32"}]) == pa.schema([])
