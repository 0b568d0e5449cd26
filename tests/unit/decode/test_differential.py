"""Differential tests: random batches through each fast decode path and through its per-record
reference give the same rows, value for value and in order; a value the reference refuses is a
dead letter on both, never a row paired with another record."""

from __future__ import annotations

import io
import json
import struct
from typing import Any

import fastavro
import pyarrow as pa
from confluent_kafka.schema_registry import Schema, SchemaReference
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tabletopic.core.reasons import Reason
from tabletopic.core.records import RecordChunk
from tabletopic.decode.avro import AvroDecoder, WriterSchemas, avro_to_arrow
from tabletopic.decode.json import JsonDecoder
from tabletopic.decode.renames import rename_json, rename_record, renamed_schema
from tabletopic.kafka.registry import SchemaRegistry
from tests.unit.decode.deadline import within

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Each property runs in a process of its own: a native reader that spins, or crashes, fails the test
# instead of hanging or killing the run.
DEADLINE_S = 600


def chunk(values: list[bytes | None]) -> RecordChunk:
    n = len(values)
    return RecordChunk("t", 0, list(range(n)), [None] * n, values, [0] * n, [None] * n)


# --- Avro -------------------------------------------------------------------------------------

FULL = {
    "type": "record", "name": "Event", "namespace": "diff", "fields": [
        {"name": "id", "type": "long"},
        {"name": "n", "type": "int"},
        {"name": "ok", "type": "boolean"},
        {"name": "note", "type": ["null", "string"]},
        {"name": "d", "type": "double"},
        {"name": "s", "type": "string"},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "inner", "type": {"type": "record", "name": "Inner", "fields": [
            {"name": "x", "type": "long"}, {"name": "y", "type": ["null", "double"]}]}},
        {"name": "lines", "type": {"type": "array", "items": {"type": "record", "name": "Line", "fields": [
            {"name": "q", "type": "int"}, {"name": "k", "type": "string"}]}}},
    ],
}
# An older version without `note` (in the middle) and `lines`: the table takes its records as they are.
OLDER = {**FULL, "fields": [f for f in FULL["fields"] if f["name"] not in ("note", "lines")]}
UNKNOWN_ID = 999_999
MAX_ITEMS = 6  # the decoder's cap on array items per record: a good record has at most 3 tags and 3 lines


def _registry() -> tuple[SchemaRegistry, int, int, int]:
    registry = SchemaRegistry("mock://differential")
    client = registry._client  # the seam: registering is not tabletopic's business
    full = client.register_schema("full-value", Schema(json.dumps(FULL), "AVRO"))
    older = client.register_schema("older-value", Schema(json.dumps(OLDER), "AVRO"))
    referencing = {"type": "record", "name": "Ref", "fields": [{"name": "line", "type": "diff.Line"}]}
    client.register_schema("line-value", Schema(json.dumps(FULL["fields"][-1]["type"]["items"]), "AVRO"))
    unreadable = client.register_schema(
        "ref-value", Schema(json.dumps(referencing), "AVRO", [SchemaReference("diff.Line", "line-value", 1)]))
    return registry, full, older, unreadable


REGISTRY, FULL_ID, OLDER_ID, UNREADABLE_ID = _registry()
PARSED = {FULL_ID: fastavro.parse_schema(FULL), OLDER_ID: fastavro.parse_schema(OLDER)}

strings = st.text(max_size=6)
records = st.fixed_dictionaries({
    "n": st.integers(-(2**31), 2**31 - 1), "ok": st.booleans(), "note": st.none() | strings,
    "d": st.floats(allow_nan=False), "s": strings,
    "at": st.integers(-62_135_596_800_000, 253_402_300_799_999),
    "day": st.integers(-719_162, 2_932_896),
    "tags": st.lists(strings, max_size=3),
    "inner": st.fixed_dictionaries({"x": st.integers(-(2**63), 2**63 - 1),
                                    "y": st.none() | st.floats(allow_nan=False)}),
    "lines": st.lists(st.fixed_dictionaries({"q": st.integers(-5, 5), "k": strings}), max_size=3),
})
# Kinds of value; the good ones several times, so many batches are clean enough for the fast path.
GOOD = ("full", "full", "full", "older", "older")
ALWAYS_BAD = ("trailing", "truncated", "wrong_magic", "short", "unknown_id", "unreadable", "many_items")
MAYBE_BAD = ("full_as_older", "older_as_full", "null")


def _body(schema_id: int, record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, PARSED[schema_id], record)
    return out.getvalue()


def _wire(schema_id: int, payload: bytes) -> bytes:
    return struct.pack(">bI", 0, schema_id) + payload


@st.composite
def avro_values(draw: st.DrawFn) -> tuple[list[bytes | None], list[str]]:
    values: list[bytes | None] = []
    kinds: list[str] = []
    for index in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(GOOD + ALWAYS_BAD + MAYBE_BAD) if draw(st.booleans()) else st.sampled_from(GOOD))
        record = {**draw(records), "id": index}
        full, older = _body(FULL_ID, record), _body(OLDER_ID, record)
        value: bytes | None = {
            "full": _wire(FULL_ID, full),
            "older": _wire(OLDER_ID, older),
            "full_as_older": _wire(OLDER_ID, full),
            "older_as_full": _wire(FULL_ID, older),
            "trailing": _wire(FULL_ID, full + draw(st.binary(min_size=1, max_size=3))),
            "truncated": _wire(FULL_ID, full[: draw(st.integers(0, len(full) - 1))]),
            "wrong_magic": b"\x01" + _wire(FULL_ID, full)[1:],
            "short": _wire(FULL_ID, full)[: draw(st.integers(0, 4))],
            "unknown_id": _wire(UNKNOWN_ID, full),
            "unreadable": _wire(UNREADABLE_ID, full),
            "null": None,
            "many_items": _wire(FULL_ID, _body(FULL_ID, {**record, "tags": ["t"] * (MAX_ITEMS + 1)})),
        }[kind]
        values.append(value)
        kinds.append(kind)
    return values, kinds


AVRO_DECODER = AvroDecoder(WriterSchemas(REGISTRY), avro_to_arrow(PARSED[FULL_ID]), max_items=MAX_ITEMS)
# rename_columns: the same table with three top-level columns under other names (nested `x` and `q` keep theirs).
RENAMES = {"id": "event_id", "n": "count", "lines": "rows"}
RENAMED_DECODER = AvroDecoder(WriterSchemas(REGISTRY), renamed_schema(avro_to_arrow(PARSED[FULL_ID]), RENAMES),
                              max_items=MAX_ITEMS, renames=RENAMES)


def test_the_avro_batch_path_gives_what_the_per_record_path_gives() -> None:
    within(DEADLINE_S, run_check_avro_batches)


def run_check_avro_batches() -> None:  # a plain function: the process pool pickles it by name
    check_avro_batches()


@SETTINGS
@given(avro_values())
def check_avro_batches(batch: tuple[list[bytes | None], list[str]]) -> None:
    values, kinds = batch
    reference = AVRO_DECODER._decode_each(values)
    good = list(range(len(values))) if reference.good is None else reference.good
    bad = [b.index for b in reference.bad]
    assert sorted(good + bad) == list(range(len(values)))
    assert not [i for i in bad if kinds[i] in GOOD], "a good record is a dead letter"
    assert not [i for i in good if kinds[i] in ALWAYS_BAD], "a bad record is a row"
    assert reference.rows.column("id").to_pylist() == [None if kinds[i] == "null" else i for i in good]

    fast = AVRO_DECODER._decode_batch(values)
    if fast is not None:  # the fast path only answers for a batch whose every value is good
        assert bad == []
        assert fast.to_pylist() == reference.rows.to_pylist()
        assert fast.schema.equals(reference.rows.schema)

    decoded = AVRO_DECODER.decode(chunk(values), allow_drift=False)
    assert decoded.rows.to_pylist() == reference.rows.to_pylist()
    assert [(b.index, b.code) for b in decoded.bad] == [(b.index, b.code) for b in reference.bad]
    assert (decoded.good if decoded.good is not None else list(range(len(values)))) == good

    # Renamed: both paths give the reference's rows under the new names, and the same dead letters.
    renamed = RENAMED_DECODER._decode_each(values)
    assert renamed.rows.to_pylist() == [rename_record(row, RENAMES) for row in reference.rows.to_pylist()]
    assert [(b.index, b.code) for b in renamed.bad] == [(b.index, b.code) for b in reference.bad]
    renamed_fast = RENAMED_DECODER._decode_batch(values)
    if renamed_fast is not None:
        assert renamed_fast.to_pylist() == renamed.rows.to_pylist()
        assert renamed_fast.schema.equals(renamed.rows.schema)


def test_the_fast_path_takes_clean_avro_batches() -> None:
    """So the property above compares two paths, not one with itself."""
    values: list[bytes | None] = [_wire(FULL_ID if i % 2 else OLDER_ID, _body(FULL_ID if i % 2 else OLDER_ID, {
        "id": i, "n": 1, "ok": True, "note": None, "d": 1.5, "s": "x", "at": 0, "day": 0, "tags": ["a"],
        "inner": {"x": 1, "y": None}, "lines": [{"q": 1, "k": "k"}]})) for i in range(6)]
    assert AVRO_DECODER._decode_batch(values) is not None
    assert RENAMED_DECODER._decode_batch(values) is not None


def test_a_writer_schema_with_a_renamed_field_and_its_target_makes_each_record_a_rename_collision() -> None:
    onto_existing = {"n": "s"}  # `s` is a field of its own: each record would hold both
    decoder = AvroDecoder(WriterSchemas(REGISTRY), avro_to_arrow(PARSED[FULL_ID]), renames=onto_existing)
    values: list[bytes | None] = [_wire(FULL_ID, _body(FULL_ID, {
        "id": i, "n": 1, "ok": True, "note": None, "d": 1.5, "s": "x", "at": 0, "day": 0, "tags": [],
        "inner": {"x": 1, "y": None}, "lines": []})) for i in range(3)]
    assert decoder._decode_batch(values) is None
    decoded = decoder.decode(chunk(values))
    assert decoded.rows.num_rows == 0
    assert [(b.index, b.code) for b in decoded.bad] == [(i, Reason.RENAME_COLLISION) for i in range(3)]
    assert "'n'" in decoded.bad[0].reason and "'s'" in decoded.bad[0].reason


# --- JSON -------------------------------------------------------------------------------------

JSON_SCHEMA = pa.schema([
    pa.field("id", pa.int64()), pa.field("name", pa.string()), pa.field("score", pa.float64()),
    pa.field("flag", pa.bool_()), pa.field("tags", pa.list_(pa.string())),
    pa.field("inner", pa.struct([pa.field("x", pa.int64())])),
])
# JSON_SCHEMA as a table read back from the catalog gives it (pyiceberg's Schema.as_arrow).
LARGE_JSON_SCHEMA = pa.schema([
    pa.field("id", pa.int64()), pa.field("name", pa.large_string()), pa.field("score", pa.float64()),
    pa.field("flag", pa.bool_()), pa.field("tags", pa.large_list(pa.field("element", pa.large_string(), False))),
    pa.field("inner", pa.struct([pa.field("x", pa.int64())])),
])
json_records = st.fixed_dictionaries({}, optional={
    "name": st.none() | st.text(max_size=6), "score": st.none() | st.floats(allow_nan=False, allow_infinity=False),
    "flag": st.none() | st.booleans(), "tags": st.none() | st.lists(st.text(max_size=4), max_size=3),
    "inner": st.none() | st.fixed_dictionaries({"x": st.integers(-(2**63), 2**63 - 1)}),
})
JSON_KINDS = ("object", "object", "object", "object", "pretty", "spaced", "blank", "null", "two", "trailing",
              "truncated", "not_an_object", "wrong_type")
JSON_RENAMES = {"id": "event_id", "inner": "nested"}
JSON_ALWAYS_BAD = ("two", "trailing", "truncated", "not_an_object", "wrong_type")


@st.composite
def json_values(draw: st.DrawFn) -> tuple[list[bytes | None], list[str]]:
    values: list[bytes | None] = []
    kinds: list[str] = []
    for index in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(JSON_KINDS))
        record = {"id": index, **draw(json_records)}
        text = json.dumps(record, ensure_ascii=draw(st.booleans()))
        value: bytes | None = {
            "object": text,
            "pretty": json.dumps(record, indent=draw(st.sampled_from([1, "\t", "\r\n"]))),
            "spaced": draw(st.sampled_from([" ", "\n", "\t", "\r\n"])) + text + draw(st.sampled_from(["", " ", "\n"])),
            "blank": draw(st.sampled_from(["", " ", "\t", "\n", " \r\n ", "\n\n"])),
            "null": None,
            "two": text + draw(st.sampled_from(["", " ", "\n", "\r\n", "\n\n"])) + json.dumps({"id": -index}),
            "trailing": text + draw(st.sampled_from(["}", "x", "]", ",", "1"])),
            "truncated": text[: draw(st.integers(1, len(text) - 1))],
            "not_an_object": draw(st.sampled_from(["[1]", "5", '"s"', "null", "true"])),
            "wrong_type": json.dumps({**record, "id": str(index) + "x"}),
        }[kind]
        values.append(value.encode() if isinstance(value, str) else value)
        kinds.append(kind)
    return values, kinds


def json_reference(values: list[bytes | None]) -> tuple[list[dict[str, Any]], list[int], list[int]]:
    """One value at a time with json.loads and Arrow: (rows, good indices, bad indices). A null or blank
    value is a row of nulls, as in the batch path."""
    rows, good, bad = [], [], []
    for index, value in enumerate(values):
        try:
            parsed = {} if value is None or not value.strip() else json.loads(value)
            if not isinstance(parsed, dict):
                raise ValueError("not an object")
            row = pa.Table.from_pylist([parsed], schema=JSON_SCHEMA).to_pylist()[0]
        except (ValueError, TypeError, OverflowError, pa.ArrowException):
            bad.append(index)
            continue
        rows.append(row)
        good.append(index)
    return rows, good, bad


def test_the_json_batch_path_gives_what_the_per_record_path_gives() -> None:
    within(DEADLINE_S, run_check_json_batches)


def run_check_json_batches() -> None:  # a plain function: the process pool pickles it by name
    check_json_batches()


@SETTINGS
@given(json_values())
def check_json_batches(batch: tuple[list[bytes | None], list[str]]) -> None:
    values, kinds = batch
    rows, good, bad = json_reference(values)
    assert not [i for i in good if kinds[i] in JSON_ALWAYS_BAD], "a bad value is a row"
    assert [row["id"] for row in rows] == [None if kinds[i] in ("blank", "null") else i for i in good]

    decoded = JsonDecoder(JSON_SCHEMA).decode(chunk(values), allow_drift=False)
    assert (decoded.good if decoded.good is not None else list(range(len(values)))) == good
    assert [b.index for b in decoded.bad] == bad
    assert decoded.rows.to_pylist() == rows

    # The table's own types (pyiceberg gives large strings and lists): the same rows, parsed straight
    # into its string types, so nothing but a list's offsets is cast after.
    large = JsonDecoder(LARGE_JSON_SCHEMA).decode(chunk(values), allow_drift=False)
    assert (large.good if large.good is not None else list(range(len(values)))) == good
    assert [b.index for b in large.bad] == bad
    assert large.rows.to_pylist() == rows
    assert large.rows.schema.field("name").type == pa.large_string()
    assert large.rows.schema.field("tags").type.value_type == pa.large_string()

    # Renamed (as intake renames before decoding): the same records good, their rows under the new names.
    renamed_values = [None if v is None else rename_json(v, JSON_RENAMES) for v in values]
    renamed = JsonDecoder(renamed_schema(JSON_SCHEMA, JSON_RENAMES)).decode(chunk(renamed_values), allow_drift=False)
    assert (renamed.good if renamed.good is not None else list(range(len(values)))) == good
    assert [b.index for b in renamed.bad] == bad
    assert renamed.rows.to_pylist() == [rename_record(row, JSON_RENAMES) for row in rows]
