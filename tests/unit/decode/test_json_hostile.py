"""Hostile JSON (tests/hostile/json) is a dead letter with its reason, never an exception out of the decoder,
a field name no column may have, or a row with an altered value."""

from __future__ import annotations

import json
from decimal import Decimal

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyiceberg.io.pyarrow import _ConvertToIcebergWithoutIDs, visit_pyarrow

from tabletopic.catalog.schema_check import check_schema
from tabletopic.catalog.tables import table_schema
from tabletopic.core.reasons import Reason
from tabletopic.core.records import RecordChunk
from tabletopic.decode.base import Decoded, SchemaDrift
from tabletopic.decode.json import JsonDecoder, infer_schema
from tabletopic.decode.json_guard import MAX_DEPTH, name_problem, nesting_depth
from tabletopic.decode.names import lowercase_json
from tabletopic.routing import route_values
from tests.hostile import field_names, payloads

HOSTILE = payloads("json")
GOOD = [b'{"id": 1, "name": "a"}', b'{"id": 2, "name": "b", "pr\xc3\xa9nom nom-2": "x", "n": {"v": 2.5}}']
SCHEMA = pa.schema([pa.field("id", pa.int64()), pa.field("name", pa.large_string())])


def chunk(values: list[bytes | None]) -> RecordChunk:
    n = len(values)
    return RecordChunk("t", 0, list(range(n)), [None] * n, values, [0] * n, [None] * n)


def decode_as_the_sink(
    schema: pa.Schema, values: list[bytes | None], drift: str = "evolve"
) -> tuple[Decoded, pa.Schema]:
    """Decode the way the sink does: evolve to a SchemaDrift's schema (three times at most), then decode."""
    for _ in range(3):
        try:
            return JsonDecoder(schema, drift).decode(chunk(values)), schema  # type: ignore[arg-type]
        except SchemaDrift as drift_to:
            schema = drift_to.incoming
            check_schema(schema)
    return JsonDecoder(schema, drift).decode(chunk(values), allow_drift=False), schema  # type: ignore[arg-type]


def assert_names_fit(schema: pa.Schema) -> None:
    assert [n for n in field_names(pa.struct(list(schema))) if name_problem(n)] == []
    assert_iceberg_takes(schema)


def assert_iceberg_takes(schema: pa.Schema) -> None:
    """pyiceberg builds its name index for `schema` (it raises "multiple fields for name a.b" on a collision)."""
    iceberg = visit_pyarrow(table_schema(schema, with_metadata=True), _ConvertToIcebergWithoutIDs())
    iceberg._name_to_id  # noqa: B018  # the index is built lazily


@pytest.mark.parametrize("payload", HOSTILE, ids=[p.name for p in HOSTILE])
def test_each_hostile_payload_is_a_dead_letter_with_its_reason_among_good_records(payload):
    values: list[bytes | None] = [GOOD[0], payload.value, GOOD[1], None]
    decoded, schema = decode_as_the_sink(SCHEMA, values)
    assert [(b.index, str(b.code)) for b in decoded.bad] == [(1, payload.reason)], decoded.bad
    assert decoded.good == [0, 2, 3]
    assert decoded.rows.column("id").to_pylist() == [1, 2, None]
    assert_names_fit(schema)


@pytest.mark.parametrize("drift", ["strict", "ignore"])
def test_under_strict_and_ignore_no_hostile_payload_raises(drift):
    values: list[bytes | None] = [GOOD[0], *(p.value for p in HOSTILE), GOOD[0]]
    decoded = JsonDecoder(SCHEMA, drift).decode(chunk(values))  # type: ignore[arg-type]
    assert len(decoded.bad) + decoded.rows.num_rows == len(values)
    deep = {i + 1 for i, p in enumerate(HOSTILE) if p.reason == "too_deep"}
    assert deep <= {b.index for b in decoded.bad if b.code == Reason.TOO_DEEP}


def test_a_new_table_schema_never_takes_a_hostile_payloads_names_or_types():
    inferred = infer_schema([*(p.value for p in HOSTILE), *GOOD])
    assert inferred == infer_schema(GOOD)
    assert "big" not in inferred.names  # an integer past int64 would have made a double column


def test_a_field_name_inside_a_new_struct_is_checked_at_any_depth():
    values: list[bytes | None] = [b'{"id": 1, "s": {"t": [{"ok": 1, "a\\u001bb": 2}]}}',
                                  b'{"id": 2, "s": {"t": [{"ok": 3}]}}']
    decoded, schema = decode_as_the_sink(SCHEMA, values)
    assert [(b.index, b.code) for b in decoded.bad] == [(0, Reason.BAD_FIELD_NAME)]
    assert "U+001B" in decoded.bad[0].reason
    assert schema.field("s").type == pa.struct([pa.field("t", pa.list_(pa.struct([pa.field("ok", pa.int64())])))])


def test_ordinary_names_are_taken():
    persian_with_zwnj, devanagari_with_zwj = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645", "क्\u200dष"
    taken = ("prénom nom", "user-id", "Größe", "数量", "a b", "x_1", "$ref", "a:b", "emoji🙂", "host.name",
             "app.kubernetes.io/name", "a/b", "/", persian_with_zwnj, devanagari_with_zwj)
    for name in taken:
        assert name_problem(name) is None, name
    refused = ("", "a..b", "..", ".a", "a.", ".", "a\x00b", "\x1b[31m", "a\x7fb", "a\x9bb", "\ud800", "x" * 256,
               *(f"a{chr(c)}b" for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]))  # bidi overrides
    for name in refused:
        assert name_problem(name) is not None, repr(name)


def test_ecs_and_kubernetes_label_names_land_as_rows():
    values: list[bytes | None] = [b'{"id": 1, "host.name": "h1"}',
                                  b'{"id": 2, "labels": {"app.kubernetes.io/name": "web"}, "a/b": 1}']
    decoded, schema = decode_as_the_sink(SCHEMA, values)
    assert decoded.bad == []
    assert decoded.rows.column("host.name").to_pylist() == ["h1", None]
    assert decoded.rows.column("labels").to_pylist() == [None, {"app.kubernetes.io/name": "web"}]
    assert decoded.rows.column("a/b").to_pylist() == [None, 1]
    assert_iceberg_takes(schema)


def test_a_new_table_takes_dotted_and_slashed_names():
    inferred = infer_schema([b'{"host.name": "h", "labels": {"app.kubernetes.io/name": "x"}}'])
    assert inferred.names == ["host.name", "labels"]
    assert_iceberg_takes(inferred)


STRUCT_AB = pa.schema([pa.field("id", pa.int64()), pa.field("a", pa.struct([pa.field("b", pa.int64())]))])
COLUMN_A_DOT_B = pa.schema([pa.field("id", pa.int64()), pa.field("a.b", pa.int64())])
LIST_OF_B = pa.schema([pa.field("id", pa.int64()), pa.field("l", pa.list_(pa.struct([pa.field("b", pa.int64())])))])


@pytest.mark.parametrize(
    ("schema", "value", "collides"),
    [
        (STRUCT_AB, b'{"id": 2, "a.b": 2}', True),  # pyiceberg: "multiple fields for name a.b"
        (STRUCT_AB, b'{"id": 2, "a": {"b": 1, "c": 2}}', False),
        (STRUCT_AB, b'{"id": 2, "a.c": 2}', False),
        (COLUMN_A_DOT_B, b'{"id": 2, "a": {"b": 1}}', True),
        (COLUMN_A_DOT_B, b'{"id": 2, "a": {"c": 1}}', False),
        (COLUMN_A_DOT_B, b'{"id": 2, "a.b": 3}', False),
        (LIST_OF_B, b'{"id": 2, "l.element.b": 1}', True),  # a list's items are named `element`
        (LIST_OF_B, b'{"id": 2, "l.b": 1}', False),  # short names do not collide in pyiceberg
        (pa.schema([pa.field("x", pa.struct([pa.field("a.b", pa.int64())]))]), b'{"x": {"a": {"b": 1}}}', True),
    ],
)
def test_a_dotted_name_colliding_with_a_nested_path_of_the_table_is_a_dead_letter(schema, value, collides):
    assert_iceberg_takes(schema)
    decoded, evolved = decode_as_the_sink(schema, [b'{"id": 1}', value])
    assert [(b.index, b.code) for b in decoded.bad] == ([(1, Reason.BAD_FIELD_NAME)] if collides else [])
    if collides:
        assert "collides" in decoded.bad[0].reason
    assert_iceberg_takes(evolved)


def test_a_dotted_name_colliding_with_another_records_nested_path_is_a_dead_letter():
    values: list[bytes | None] = [b'{"id": 1, "a": {"b": 1}}', b'{"id": 2, "a.b": 2}', b'{"id": 3}']
    assert infer_schema(values).names == ["id", "a"]
    decoded, schema = decode_as_the_sink(SCHEMA, values)
    assert [(b.index, b.code) for b in decoded.bad] == [(1, Reason.BAD_FIELD_NAME)]
    assert decoded.rows.column("a").to_pylist() == [{"b": 1}, None]
    assert_iceberg_takes(schema)


DECIMAL_ID = pa.schema([pa.field("id", pa.decimal128(38, 0)), pa.field("n", pa.int64())])


@pytest.mark.parametrize("neighbours", [[], [b"garbage"], [b'{"n": 1.5}']])
def test_a_big_integer_fitting_a_decimal_column_lands_whatever_its_neighbours(neighbours):
    values: list[bytes | None] = [b'{"id": 12345678901234567890123, "n": 1}', *neighbours]
    decoded = JsonDecoder(DECIMAL_ID).decode(chunk(values))
    assert [b.index for b in decoded.bad] == list(range(1, len(values)))
    assert decoded.rows.column("id").to_pylist() == [Decimal("12345678901234567890123")]


def test_a_big_integer_for_an_integer_column_next_to_a_decimal_one_is_still_a_dead_letter():
    values: list[bytes | None] = [b'{"id": 1, "n": 12345678901234567890123}', b"garbage", b'{"id": 2, "n": 2}']
    decoded = JsonDecoder(DECIMAL_ID).decode(chunk(values))
    assert [(b.index, b.code) for b in decoded.bad] == [(0, Reason.TYPE_MISMATCH), (1, Reason.MALFORMED_JSON)]
    assert decoded.rows.column("n").to_pylist() == [2]


def test_an_integer_past_int64_into_a_map_table_is_a_dead_letter_not_an_overflow_error():
    schema = pa.schema([pa.field("id", pa.int64()), pa.field("m", pa.map_(pa.large_string(), pa.int64()))])
    values: list[bytes | None] = [b'{"id": 1, "m": {"a": 1}}', b'{"id": 9223372036854775808}',
                                  b'{"id": 3, "m": {"a": -9223372036854775809}}', b'{"id": 4}']
    decoded = JsonDecoder(schema).decode(chunk(values))
    assert [(b.index, b.code) for b in decoded.bad] == [(1, Reason.TYPE_MISMATCH), (2, Reason.TYPE_MISMATCH)]
    assert "outside the 64-bit range" in decoded.bad[0].reason
    assert decoded.rows.column("id").to_pylist() == [1, 4]


def test_an_integer_past_a_narrower_column_in_a_map_table_is_a_dead_letter():
    schema = pa.schema([pa.field("m", pa.map_(pa.large_string(), pa.int32()))])
    values: list[bytes | None] = [b'{"m": {"a": 1}}', b'{"m": {"a": 1099511627776}}']
    decoded = JsonDecoder(schema).decode(chunk(values))
    assert [(b.index, b.code) for b in decoded.bad] == [(1, Reason.TYPE_MISMATCH)]
    assert "outside the range of a int32 column" in decoded.bad[0].reason


def test_an_integer_past_int64_is_never_rounded_into_a_double_column():
    schema = pa.schema([pa.field("id", pa.int64()), pa.field("x", pa.float64())])
    values: list[bytes | None] = [b'{"id": 1, "x": 18446744073709551617}', b'{"id": 2, "x": 1e30}',
                                  b'{"id": 3, "x": "12345678901234567890123"}']
    decoded = JsonDecoder(schema).decode(chunk(values))
    assert [(b.index, b.code) for b in decoded.bad] == [(0, Reason.TYPE_MISMATCH), (2, Reason.TYPE_MISMATCH)]
    assert "outside the 64-bit range" in decoded.bad[0].reason
    assert decoded.rows.column("x").to_pylist() == [1e30]


def test_routing_sends_a_value_too_deep_to_the_default_table():
    deep = b'{"kind": "a", "x": ' + b"[" * 20000 + b"]" * 20000 + b"}"
    assert route_values([b'{"kind": "a"}', deep, b"[" * 4096, None], "kind") == ["a", None, None, None]


def test_lowercasing_leaves_a_value_too_deep_to_the_decoder():
    deep = b'{"A": ' + b"[" * 4096 + b"]" * 4096 + b"}"
    assert lowercase_json(deep, SCHEMA) == deep


@pytest.mark.parametrize(
    ("value", "depth"),
    [
        (b'{"a": [1, {"b": []}]}', 3),
        (b'{"s": "' + b"[" * 100 + b'"}', 1),  # brackets in a string do not count
        (b'{"s": "\\"' + b"[" * 100 + b'"}', 1),  # nor after an escaped quote
        (b'{"s": "\\\\"' + b", " + b"[" * 100 + b"]" * 100 + b"}", 101),  # an escaped backslash ends the string
        (b"]" * 100 + b"[" * 100, 100),  # stray closers first do not hide the rise
        (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), MAX_DEPTH + 1),
    ],
)
def test_nesting_depth_counts_brackets_outside_strings(value, depth):
    measured = nesting_depth(value)
    assert measured == depth if depth > MAX_DEPTH else measured <= MAX_DEPTH


def test_the_depth_limit_admits_a_value_at_the_limit():
    at_limit = b'{"a": ' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"}"
    decoded, _ = decode_as_the_sink(pa.schema([]), [at_limit, at_limit.replace(b'"a"', b'"b"', 1) + b" "])
    assert decoded.bad == [] or all(b.code != Reason.TOO_DEEP for b in decoded.bad)


# --- fuzz ---------------------------------------------------------------------------------------------

NAMES = st.one_of(
    st.sampled_from(["id", "name", "n", "", "a.b", "a", "b", "..", "/", "\x00", "\x1b[0m", "\x7f", "\u202e", "é x-y",
                     "a.element", "element", "a.element.b", ".a", "a.", "a/b", "_kafka_headers", "_kafka_headers.key"]),
    st.text(max_size=6),
)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.floats(allow_nan=False), st.text(max_size=5),
    st.integers(min_value=-(1 << 70), max_value=1 << 70),
)
JSONISH = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                        st.dictionaries(NAMES, inner, max_size=3)), max_leaves=12)


@st.composite
def values(draw: st.DrawFn) -> bytes | None:
    kind = draw(st.sampled_from(["object", "object", "object", "deep", "bytes", "null", "corpus"]))
    if kind == "object":
        return json.dumps(draw(st.dictionaries(NAMES, JSONISH, max_size=4))).encode()
    if kind == "deep":
        depth = draw(st.integers(min_value=MAX_DEPTH - 2, max_value=6000))
        opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
        tail = b"1" + closer * depth if draw(st.booleans()) else b""
        return b'{"x": ' + opener * depth + tail + b"}"
    if kind == "bytes":
        return draw(st.binary(max_size=40))
    if kind == "corpus":
        return draw(st.sampled_from(HOSTILE)).value
    return None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(values(), min_size=1, max_size=12), drift=st.sampled_from(["evolve", "strict", "ignore"]),
       with_map=st.booleans())
def test_random_json_is_rows_or_dead_letters_and_never_a_bad_column(batch, drift, with_map):
    schema = infer_schema(batch)
    assert_names_fit(schema)
    if with_map:
        schema = schema.append(pa.field("m", pa.map_(pa.large_string(), pa.int64())))
    decoded, evolved = decode_as_the_sink(schema, batch, drift)
    good = list(range(len(batch))) if decoded.good is None else decoded.good
    assert sorted(good + [b.index for b in decoded.bad]) == list(range(len(batch)))
    if decoded.rows.num_columns:  # a table of no columns counts no rows
        assert decoded.rows.num_rows == len(good)
    assert_names_fit(pa.schema([f for f in evolved if f.name != "m"]))
