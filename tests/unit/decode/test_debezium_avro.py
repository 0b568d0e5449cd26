"""The `after` row schema of a Debezium Avro envelope, as the decoder sees it under its derived id."""

from __future__ import annotations

import json

import fastavro
import pytest

from tabletopic.decode.debezium_avro import AFTER_ROW_ID_OFFSET, AfterRowSchemas, NotAnEnvelope, after_row_schema

VALUE = {"type": "record", "name": "Value", "namespace": "db.public.t",
         "fields": [{"name": "id", "type": "long"}, {"name": "name", "type": ["null", "string"], "default": None}]}


def envelope(after_type) -> dict:
    return {"type": "record", "name": "Envelope", "namespace": "db.public.t", "fields": [
        {"name": "before", "type": ["null", VALUE], "default": None},
        {"name": "after", "type": after_type, "default": None},
        {"name": "op", "type": "string"}]}


@pytest.mark.parametrize("after_type", [["null", "Value"], ["null", "db.public.t.Value"]])
def test_a_named_after_is_the_record_defined_in_before(after_type):
    row = after_row_schema(envelope(after_type), {})
    assert row["name"] == "Value" and row["namespace"] == "db.public.t"
    assert [f["name"] for f in row["fields"]] == ["id", "name"]
    fastavro.parse_schema(row)  # standalone


def test_cdc_columns_are_nullable_fields_of_the_row():
    row = after_row_schema(envelope(["null", "Value"]), {"op": "_op", "lsn": "_lsn"})
    assert row["fields"][-2:] == [{"name": "_op", "type": ["null", "string"], "default": None},
                                  {"name": "_lsn", "type": ["null", "long"], "default": None}]
    with pytest.raises(NotAnEnvelope, match="already has a field"):
        after_row_schema(envelope(["null", "Value"]), {"op": "name"})


def test_a_schema_that_is_no_envelope_is_refused():
    with pytest.raises(NotAnEnvelope):
        after_row_schema(VALUE, {})
    with pytest.raises(NotAnEnvelope):
        after_row_schema(envelope(["null", "string"]), {})


class Texts:
    def __init__(self, texts):
        self.texts = texts
        self.asked: list[int] = []

    def schema_text(self, schema_id: int) -> str:
        self.asked.append(schema_id)
        return self.texts[schema_id]


def test_derived_ids_serve_the_row_and_other_ids_pass_through():
    registry = Texts({7: json.dumps(envelope(["null", "Value"])), 8: json.dumps(VALUE)})
    schemas = AfterRowSchemas(registry, {})
    assert json.loads(schemas.schema_text(8)) == VALUE
    row = json.loads(schemas.schema_text(7 + AFTER_ROW_ID_OFFSET))
    assert row["name"] == "Value"
    schemas.schema_text(7 + AFTER_ROW_ID_OFFSET)
    assert registry.asked == [8, 7]  # derived once
