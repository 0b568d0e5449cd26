"""JsonSchemaDecoder: validation, the wire format, dates and times, evolution across schema versions."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pyarrow as pa
import pytest

from tabletopic.core.reasons import Reason
from tabletopic.core.records import RecordChunk
from tabletopic.decode.base import Decoded, SchemaDrift
from tabletopic.decode.json_schema import (
    MAX_MESSAGE_CHARS,
    JsonSchemaDecoder,
    JsonSchemas,
    UnreadableJsonSchema,
    first_json_schema,
    json_schema_arrow_schema,
    looks_framed,
)
from tabletopic.decode.json_schema_types import arrow_schema_of
from tabletopic.kafka.registry import UnknownSchemaId

UTC = dt.UTC

V1: dict[str, Any] = {"type": "object", "required": ["id"], "properties": {
    "id": {"type": "integer"},
    "at": {"type": "string", "format": "date-time"},
    "day": {"type": ["string", "null"], "format": "date"},
    "who": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 5}}},
}}
# v2 adds a top-level field and a nested one; v3 adds a list of structs and drops `day`.
V2: dict[str, Any] = {**V1, "properties": {**V1["properties"], "score": {"type": "number"},
                           "who": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 5},
                                                                    "age": {"type": "integer"}}}}}
V3: dict[str, Any] = {**V2, "properties": {**{k: v for k, v in V2["properties"].items() if k != "day"},
                           "lines": {"type": "array", "items": {"type": "object", "properties": {
                               "sku": {"type": "string"}, "qty": {"type": "integer"}}}}}}
INCOMPATIBLE = {**V1, "properties": {**V1["properties"], "id": {"type": "string"}}}  # long -> string
UNMAPPABLE = {**V1, "properties": {**V1["properties"], "p": {"oneOf": [
    {"type": "object", "properties": {"a": {"type": "string"}}},
    {"type": "object", "properties": {"b": {"type": "string"}}}]}}}


class Registry:
    def __init__(self, schemas: dict[int, Any]) -> None:
        self.schemas = schemas
        self.asked: list[int] = []

    def schema_text(self, schema_id: int) -> str:
        self.asked.append(schema_id)
        if schema_id not in self.schemas:
            raise UnknownSchemaId(schema_id)
        found = self.schemas[schema_id]
        return found if isinstance(found, str) else json.dumps(found)


REGISTRY: dict[int, Any] = {1: V1, 2: V2, 3: V3, 4: INCOMPATIBLE, 5: UNMAPPABLE, 6: "{not json",
            7: {**V1, "properties": {**V1["properties"], "r": {"$ref": "https://acme/r.json"}}}}


def framed(document: Any, schema_id: int = 1) -> bytes:
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    return b"\0" + schema_id.to_bytes(4, "big") + body


def chunk(values: list[bytes | None]) -> RecordChunk:
    n = len(values)
    return RecordChunk("t", 0, list(range(n)), [None] * n, values, [0] * n, [None] * n)


def decoder(table: Any = V1, registry: dict[int, Any] | None = None) -> JsonSchemaDecoder:
    return JsonSchemaDecoder(JsonSchemas(Registry(registry or REGISTRY)), arrow_schema_of(table))


def decode(values: list[bytes | None], table: Any = V1, allow_drift: bool = False) -> Decoded:
    return decoder(table).decode(chunk(values), allow_drift=allow_drift)


def codes(decoded: Decoded) -> list[tuple[int, Reason]]:
    return [(b.index, b.code) for b in decoded.bad]


def test_valid_values_become_rows_with_dates_and_timestamps_typed() -> None:
    decoded = decode([framed({"id": 1, "at": "2024-05-01T12:00:00.25+02:00", "day": "2024-02-29",
                              "who": {"name": "ann"}}),
                      framed({"id": 2, "day": None})])
    assert decoded.bad == [] and decoded.good is None
    assert decoded.rows.to_pylist() == [
        {"id": 1, "at": dt.datetime(2024, 5, 1, 10, 0, 0, 250000, tzinfo=UTC), "day": dt.date(2024, 2, 29),
         "who": {"name": "ann"}},
        {"id": 2, "at": None, "day": None, "who": None},
    ]
    assert decoded.rows.schema == arrow_schema_of(V1)


def test_a_violating_value_is_a_dead_letter_naming_the_validators_reason() -> None:
    decoded = decode([framed({"id": 1}), framed({"at": "2024-01-01T00:00:00Z"}), framed({"id": "seven"}),
                      framed({"id": 3, "who": {"name": "too long a name"}}), framed({"id": 4, "at": "yesterday"}),
                      framed({"id": 5})])
    assert codes(decoded) == [(1, Reason.SCHEMA_VIOLATION), (2, Reason.SCHEMA_VIOLATION),
                              (3, Reason.SCHEMA_VIOLATION), (4, Reason.SCHEMA_VIOLATION)]
    reasons = [b.reason for b in decoded.bad]
    assert '"id" is a required property' in reasons[0]
    assert "at /id" in reasons[1] and "integer" in reasons[1]
    assert "at /who/name" in reasons[2] and "longer than 5" in reasons[2]
    assert "at /at" in reasons[3] and "date-time" in reasons[3]
    assert all(b.schema_id == 1 for b in decoded.bad)
    assert decoded.good == [0, 5]
    assert decoded.rows.column("id").to_pylist() == [1, 5]


def test_a_violation_message_is_cut_short() -> None:
    decoded = decode([framed({"id": "x" * 10_000})])
    assert decoded.bad[0].code == Reason.SCHEMA_VIOLATION
    assert len(decoded.bad[0].reason) < MAX_MESSAGE_CHARS + 60


@pytest.mark.parametrize(("value", "reason"), [
    (b'{"id": 1}', Reason.NOT_WIRE_FORMAT),
    (b"\0\0\0", Reason.NOT_WIRE_FORMAT),
    (framed({"id": 1}, 99), Reason.UNKNOWN_SCHEMA_ID),
    (framed(b'{"id": 1'), Reason.MALFORMED_JSON),
    (framed(b'{"id": 1, "score": NaN}'), Reason.MALFORMED_JSON),
    (framed(b'{"id": "\xff"}'), Reason.MALFORMED_JSON),
    (framed(b"[" * 5000 + b"]" * 5000), Reason.TOO_DEEP),
    (framed(b'{"id": 123456789012345678901234567890}'), Reason.TYPE_MISMATCH),
    (framed(b'{"id": 1.0}'), Reason.TYPE_MISMATCH),  # an `integer` to JSON Schema, never silently made a long
    (framed({"id": 1}, 4), Reason.INCOMPATIBLE_SCHEMA),
    (framed({"id": 1}, 5), Reason.INCOMPATIBLE_SCHEMA),
    (framed({"id": 1}, 6), Reason.INCOMPATIBLE_SCHEMA),
    (framed({"id": 1}, 7), Reason.INCOMPATIBLE_SCHEMA),
])
def test_each_bad_value_is_a_dead_letter_with_its_reason_among_good_ones(value: bytes, reason: Reason) -> None:
    decoded = decode([framed({"id": 1}), value, framed({"id": 2})])
    assert codes(decoded) == [(1, reason)]
    assert decoded.rows.column("id").to_pylist() == [1, 2]
    assert decoded.good == [0, 2]


def test_incompatible_schemas_say_why() -> None:
    reasons = [b.reason for b in decode([framed({"id": 1}, i) for i in (4, 5, 6, 7)]).bad]
    assert "id: int64 cannot change to string" in reasons[0]
    assert "'p'" in reasons[1] and "oneOf" in reasons[1]
    assert "cannot be read" in reasons[2]
    assert "remote $ref is never fetched" in reasons[3]


def test_a_tombstone_is_a_row_of_nulls() -> None:
    decoded = decode([None, framed({"id": 1})])
    assert decoded.rows.to_pylist()[0] == {"id": None, "at": None, "day": None, "who": None}
    assert decoded.rows.column("id").to_pylist() == [None, 1]


@pytest.mark.parametrize(("text", "expected"), [
    ("2024-01-01T00:00:00Z", dt.datetime(2024, 1, 1, tzinfo=UTC)),
    ("2024-01-01t00:00:00z", dt.datetime(2024, 1, 1, tzinfo=UTC)),  # RFC 3339 allows lower case
    ("2024-01-01T00:00:00.123456789Z", dt.datetime(2024, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)),  # truncated
    ("1969-12-31T23:59:59.9999995Z", dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
    ("2024-01-01T00:30:00+23:59", dt.datetime(2023, 12, 31, 0, 31, tzinfo=UTC)),
    ("0001-01-01T00:00:00Z", dt.datetime(1, 1, 1, tzinfo=UTC)),
    ("9999-12-31T23:59:59.999999Z", dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
])
def test_date_times_are_read_as_utc_microseconds(text: str, expected: dt.datetime) -> None:
    decoded = decode([framed({"id": 1, "at": text})])
    assert decoded.bad == []
    assert decoded.rows.column("at").to_pylist() == [expected]


@pytest.mark.parametrize(("text", "words"), [
    ("2016-12-31T23:59:60Z", "leap second"),
    ("0000-12-31T23:59:59Z", "years 1-9999"),
    ("0001-01-01T00:00:00+00:01", "years 1-9999"),
    ("9999-12-31T23:59:59-00:01", "years 1-9999"),
])
def test_a_date_time_no_timestamp_holds_is_a_type_mismatch(text: str, words: str) -> None:
    decoded = decode([framed({"id": 1, "at": "2024-01-01T00:00:00Z"}), framed({"id": 2, "at": text})])
    assert codes(decoded) == [(1, Reason.TYPE_MISMATCH)]
    assert words in decoded.bad[0].reason and "at" in decoded.bad[0].reason
    assert decoded.rows.column("id").to_pylist() == [1]


def test_an_integer_past_64_bits_is_refused_for_a_double_column_too() -> None:
    decoded = decode([framed({"id": 1, "score": 1e19}, 2), framed(b'{"id": 2, "score": 9223372036854775808}', 2),
                      framed({"id": 3, "score": 9223372036854775807}, 2)], table=V2)
    assert codes(decoded) == [(1, Reason.TYPE_MISMATCH)]
    assert "64-bit range" in decoded.bad[0].reason
    assert decoded.rows.column("score").to_pylist() == [1e19, 9223372036854775807.0]


def test_a_date_before_year_one_is_a_type_mismatch() -> None:
    decoded = decode([framed({"id": 1, "day": "0000-01-01"}), framed({"id": 2, "day": "0001-01-01"})])
    assert codes(decoded) == [(0, Reason.TYPE_MISMATCH)]
    assert decoded.rows.column("day").to_pylist() == [dt.date(1, 1, 1)]


def test_fields_the_schema_does_not_describe_are_dropped_and_counted() -> None:
    decoded = decode([framed({"id": 1, "extra": {"x": 1}, "who": {"name": "a", "more": 2}}), framed({"id": 2})])
    assert decoded.rows.to_pylist()[0] == {"id": 1, "at": None, "day": None, "who": {"name": "a"}}
    assert decoded.dropped_fields == 1


def test_a_field_of_the_table_that_a_records_schema_lacks_is_null_for_it() -> None:
    # v3 dropped `day`: a v3 record carrying a `day` of its own (allowed by additionalProperties) does not fill it.
    decoded = decoder(V3).decode(chunk([framed({"id": 1, "day": "not a date"}, 3)]), allow_drift=False)
    assert decoded.bad == []
    assert decoded.rows.column("id").to_pylist() == [1]


def test_three_versions_evolve_the_table_first_then_decode_interleaved() -> None:
    registry = Registry(REGISTRY)
    schemas = JsonSchemas(registry)
    values: list[bytes | None] = [
        framed({"id": 1, "day": "2024-01-01"}, 1), framed({"id": 2, "score": 1.5, "who": {"age": 3}}, 2),
        framed({"id": 3, "lines": [{"sku": "a", "qty": 2}]}, 3), framed({"id": 4}, 1)]
    table = arrow_schema_of(V1)
    with pytest.raises(SchemaDrift) as drift:
        JsonSchemaDecoder(schemas, table).decode(chunk(values))
    evolved = drift.value.incoming
    assert evolved.names == ["id", "at", "day", "who", "score", "lines"]
    assert evolved.field("who").type == pa.struct([pa.field("name", pa.string()), pa.field("age", pa.int64())])
    decoded = JsonSchemaDecoder(schemas, evolved).decode(chunk(values))
    assert decoded.bad == []
    rows = decoded.rows.to_pylist()
    assert [r["id"] for r in rows] == [1, 2, 3, 4]
    assert rows[0]["day"] == dt.date(2024, 1, 1) and rows[0]["score"] is None
    assert rows[1]["who"] == {"name": None, "age": 3} and rows[1]["score"] == 1.5
    assert rows[2]["lines"] == [{"sku": "a", "qty": 2}] and rows[2]["day"] is None
    assert sorted(set(registry.asked)) == [1, 2, 3]  # each schema fetched once, however often it is used
    assert len(registry.asked) == 3


def test_a_change_that_did_not_land_makes_dead_letters_not_rows() -> None:
    decoded = decode([framed({"id": 1}, 1), framed({"id": 2, "score": 1.0}, 2)], allow_drift=False)
    assert codes(decoded) == [(1, Reason.INCOMPATIBLE_SCHEMA)]
    assert "did not land" in decoded.bad[0].reason


def test_an_incompatible_version_does_not_hold_up_the_compatible_ones() -> None:
    decoded = decoder().decode(chunk([framed({"id": 1}, 1), framed({"id": "x"}, 4), framed({"id": 3}, 1)]))
    assert codes(decoded) == [(1, Reason.INCOMPATIBLE_SCHEMA)]
    assert decoded.rows.column("id").to_pylist() == [1, 3]


def test_a_value_spanning_lines_is_read_whole() -> None:
    decoded = decode([framed(json.dumps({"id": 1, "who": {"name": "a\nb"}}, indent=2).encode()), framed({"id": 2})])
    assert decoded.bad == []
    assert decoded.rows.column("who").to_pylist() == [{"name": "a\nb"}, None]


def test_looks_framed() -> None:
    assert looks_framed(framed({"id": 1}))
    assert looks_framed(b"\0\0\0\0\1")
    assert not looks_framed(b"\0\0\0\1")
    assert not looks_framed(b'{"id": 1}')
    assert not looks_framed(None)


def test_the_first_readable_schema_gives_a_new_tables_columns() -> None:
    schemas = JsonSchemas(Registry(REGISTRY))
    first = first_json_schema(schemas, [None, b"{}", framed({}, 99), framed({}, 6), framed({}, 2), framed({}, 1)])
    assert first is not None and first.schema_id == 2
    assert json_schema_arrow_schema(first) == arrow_schema_of(V2)
    assert first_json_schema(schemas, [b"{}", None]) is None


def test_an_unreadable_schema_is_remembered() -> None:
    registry = Registry(REGISTRY)
    schemas = JsonSchemas(registry)
    for _ in range(2):
        with pytest.raises(UnreadableJsonSchema):
            schemas.registered(6)
    assert registry.asked == [6]


def test_a_framed_value_on_a_schemaless_json_table_names_the_setting_it_needs() -> None:
    from tabletopic.decode.json import JsonDecoder

    value = framed({"id": 1})
    decoded = JsonDecoder(pa.schema([pa.field("id", pa.int64())]), "evolve").decode(
        RecordChunk("t", 0, [7], [None], [value], [0], [None]), allow_drift=False)
    [bad] = decoded.bad
    assert bad.code == Reason.MALFORMED_JSON
    assert "json_schema: true" in bad.reason and "schema id" in bad.reason
