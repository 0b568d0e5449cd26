"""JSON Schema → the table's column types (decode/json_schema_types.py)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from tabletopic.decode.json_schema_types import arrow_schema_of
from tabletopic.exceptions import SchemaError


def column(field_schema: Any, **root: Any) -> pa.DataType:
    """The column type of one property `f` with schema `field_schema`."""
    return arrow_schema_of({"type": "object", "properties": {"f": field_schema}, **root}).field("f").type


@pytest.mark.parametrize(("field_schema", "expected"), [
    ({"type": "string"}, pa.string()),
    ({"type": "integer"}, pa.int64()),
    ({"type": "number"}, pa.float64()),
    ({"type": "boolean"}, pa.bool_()),
    ({"type": "string", "format": "date-time"}, pa.timestamp("us", tz="UTC")),
    ({"type": "string", "format": "date"}, pa.date32()),
    ({"type": "string", "format": "time"}, pa.string()),  # keeps its offset: no column type holds one
    ({"type": "string", "format": "uuid"}, pa.string()),
    ({"type": ["string", "null"]}, pa.string()),
    ({"type": ["null", "integer"]}, pa.int64()),
    ({"oneOf": [{"type": "null"}, {"type": "string", "format": "date-time"}]}, pa.timestamp("us", tz="UTC")),
    ({"anyOf": [{"type": "number"}, {"type": "null"}]}, pa.float64()),
    ({"allOf": [{"type": "boolean"}]}, pa.bool_()),
    ({"enum": ["a", "b", None]}, pa.string()),
    ({"type": "string", "enum": ["a", "b"]}, pa.string()),
    ({"enum": [1, 2]}, pa.int64()),
    ({"const": "fixed"}, pa.string()),
    ({"type": "array", "items": {"type": "integer"}}, pa.list_(pa.int64())),
    ({"items": {"type": "string", "format": "date"}}, pa.list_(pa.date32())),
    ({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "array", "items": {"type": "string"}}}},
     pa.struct([pa.field("a", pa.int64()), pa.field("b", pa.list_(pa.string()))])),
    ({"properties": {"a": {"type": "boolean"}}, "additionalProperties": False}, pa.struct([pa.field("a", pa.bool_())])),
    ({"type": "object", "additionalProperties": {"type": "integer"}}, pa.map_(pa.string(), pa.int64())),
    ({"type": "array", "items": {"type": "object", "properties": {"q": {"type": "integer"}}}},
     pa.list_(pa.struct([pa.field("q", pa.int64())]))),
])
def test_each_kind_maps_to_its_column_type(field_schema: Any, expected: pa.DataType) -> None:
    assert column(field_schema) == expected


def test_every_column_is_optional_required_only_validates() -> None:
    schema = arrow_schema_of({"type": "object", "required": ["a", "s"], "properties": {
        "a": {"type": "integer"}, "s": {"type": "object", "required": ["x"], "properties": {"x": {"type": "string"}}}}})
    assert schema.field("a").nullable
    assert schema.field("s").nullable
    assert schema.field("s").type.field("x").nullable


def test_local_refs_to_defs_and_definitions_are_inlined() -> None:
    schema = arrow_schema_of({
        "type": "object",
        "properties": {"home": {"$ref": "#/$defs/address"}, "work": {"$ref": "#/definitions/address"},
                       "both": {"type": "array", "items": {"$ref": "#/$defs/address"}}},
        "$defs": {"address": {"type": "object", "properties": {"city": {"$ref": "#/$defs/name"}}},
                  "name": {"type": "string"}},
        "definitions": {"address": {"$ref": "#/$defs/address"}},
    })
    address = pa.struct([pa.field("city", pa.string())])
    assert schema.field("home").type == address
    assert schema.field("work").type == address
    assert schema.field("both").type == pa.list_(address)


def test_the_root_may_be_a_ref_and_needs_no_type() -> None:
    schema = arrow_schema_of({"$ref": "#/definitions/Event",
                              "definitions": {"Event": {"properties": {"id": {"type": "integer"}}}}})
    assert schema == pa.schema([pa.field("id", pa.int64())])


@pytest.mark.parametrize(("document", "path", "words"), [
    ({"type": "object", "properties": {"tree": {"$ref": "#/$defs/node"}},
      "$defs": {"node": {"type": "object", "properties": {
          "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}}},
     "tree.kids[]", "recursive"),
    ({"type": "object", "properties": {"me": {"$ref": "#"}}}, "me.me", "recursive"),
    ({"type": "object", "properties": {"a": {"$ref": "https://acme/address.json"}}}, "a", "outside the schema"),
    ({"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}, "a", "points at nothing"),
    ({"type": "object", "properties": {"p": {"oneOf": [
        {"type": "object", "properties": {"card": {"type": "string"}}},
        {"type": "object", "properties": {"iban": {"type": "string"}}}]}}}, "p", "`oneOf` of 2 schemas"),
    ({"type": "object", "properties": {"v": {"type": ["string", "integer"]}}}, "v", "only one type"),
    ({"type": "object", "properties": {"v": {}}}, "v", "without `type`"),
    ({"type": "object", "properties": {"v": {"type": "object"}}}, "v", "free-form"),
    ({"type": "object", "properties": {"v": {"type": "array"}}}, "v", "without an `items` schema"),
    ({"type": "object", "properties": {"v": {"type": "array", "items": [{"type": "string"}]}}}, "v", "tuple"),
    ({"type": "object", "properties": {"v": {"allOf": [{"type": "string"}, {"maxLength": 3}]}}}, "v", "`allOf` of 2"),
    ({"type": "object", "properties": {"v": {"enum": ["a", 1]}}}, "v", "mixed"),
    ({"type": "object", "properties": {"v": {"$ref": "#/$defs/s", "type": "string"}}, "$defs": {"s": {}}}, "v",
     "beside"),
    ({"type": "object", "properties": {"s": {"properties": {"": {"type": "string"}}}}}, "s.", "empty field name"),
    ({"type": "object", "properties": {}}, "(value)", "no columns"),
    ({"type": "array", "items": {"type": "string"}}, "(value)", "no columns"),
])
def test_what_has_no_column_type_is_refused_naming_its_path(document: Any, path: str, words: str) -> None:
    with pytest.raises(SchemaError) as refused:
        arrow_schema_of(document)
    assert refused.value.field == path
    assert words in refused.value.reason


def test_nesting_past_the_limit_is_refused() -> None:
    node: dict[str, Any] = {"type": "string"}
    for _ in range(80):
        node = {"type": "object", "properties": {"n": node}}
    with pytest.raises(SchemaError, match="deeper"):
        arrow_schema_of({"type": "object", "properties": {"n": node}})
