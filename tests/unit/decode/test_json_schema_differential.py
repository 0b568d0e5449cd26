"""Differential test of the JSON Schema decoder: random batches of valid and invalid documents through the
batch read and through the per-record reference give the same rows, in order, and the same dead letters."""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tabletopic.core.records import RecordChunk
from tabletopic.decode import json_schema
from tabletopic.decode.json_schema import JsonSchemaDecoder, JsonSchemas, batch_rows, reference_rows
from tabletopic.decode.json_schema_types import arrow_schema_of
from tabletopic.kafka.registry import UnknownSchemaId

SCHEMA: dict[str, Any] = {"type": "object", "required": ["id"], "properties": {
    "id": {"type": "integer"},
    "x": {"type": ["number", "null"]},
    "s": {"type": "string", "maxLength": 12},
    "ok": {"type": "boolean"},
    "at": {"type": "string", "format": "date-time"},
    "day": {"type": "string", "format": "date"},
    "tags": {"type": "array", "items": {"type": "string"}},
    "inner": {"type": "object", "properties": {"when": {"type": "string", "format": "date-time"},
                                               "n": {"type": "integer"}}},
    "lines": {"type": "array", "items": {"$ref": "#/$defs/line"}},
}, "$defs": {"line": {"type": "object", "properties": {"q": {"type": "integer"}, "d": {"type": "string",
                                                                                          "format": "date"}}}}}
OLDER = {**SCHEMA, "properties": {k: v for k, v in SCHEMA["properties"].items() if k not in ("x", "lines")}}
COLUMNS = arrow_schema_of(SCHEMA)
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Registry:
    def schema_text(self, schema_id: int) -> str:
        if schema_id not in (1, 2):
            raise UnknownSchemaId(schema_id)
        return json.dumps(SCHEMA if schema_id == 1 else OLDER)


def mostly(usual: st.SearchStrategy[Any], edge: st.SearchStrategy[Any], odds: int = 6) -> st.SearchStrategy[Any]:
    """`edge` one time in `odds`, else `usual` (hypothesis favours a one_of's first branches)."""
    return st.integers(1, odds).flatmap(lambda k: edge if k == odds else usual)


@st.composite
def date_times(draw: st.DrawFn) -> str:
    year = draw(mostly(st.sampled_from([1970, 2024]) | st.integers(1, 9999), st.sampled_from([0, 1, 1969, 9999])))
    month, day = draw(st.integers(1, 12)), draw(mostly(st.integers(1, 28), st.integers(29, 31)))
    hour, minute = draw(st.integers(0, 23)), draw(st.integers(0, 59))
    second = draw(mostly(st.integers(0, 59), st.just(60)))
    fraction = draw(mostly(st.sampled_from(["", ".5", ".123", ".123456"]),
                           st.sampled_from([".9999995", ".123456789"]) |
                           st.text("0123456789", min_size=1, max_size=12).map(lambda d: "." + d)))
    zone = draw(mostly(st.sampled_from(["Z", "+00:00", "+02:00", "-01:30"]),
                       st.sampled_from(["z", "-00:00", "+23:59", "-23:59"])))
    separator = draw(mostly(st.just("T"), st.just("t")))
    return f"{year:04d}-{month:02d}-{day:02d}{separator}{hour:02d}:{minute:02d}:{second:02d}{fraction}{zone}"


dates = st.builds(lambda y, m, d: f"{y:04d}-{m:02d}-{d:02d}",
                  mostly(st.integers(1, 9999), st.sampled_from([0, 1, 9999])), st.integers(1, 12),
                  mostly(st.integers(1, 28), st.integers(29, 31)))
texts = st.text(max_size=14)
integers = mostly(st.integers(-(1 << 63), (1 << 63) - 1), st.sampled_from([0, 1 << 63, -(1 << 64), 2**53 + 1]))
numbers = st.integers(0, 2).flatmap(lambda k: [st.floats(allow_nan=False, allow_infinity=False), integers,
                                                st.sampled_from([1e308, 1e19, 1.0, 1 << 63, -(1 << 63) - 1])][k])
# Some values of the wrong type, so that the batch also holds violations.
anything = st.none() | st.booleans() | integers | texts | st.just(1.0) | st.just([1])


def field(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return mostly(strategy, anything, odds=10)


documents = st.fixed_dictionaries(
    {"id": field(integers)},
    optional={
        "x": field(numbers | st.none()), "s": field(texts), "ok": field(st.booleans()), "at": field(date_times()),
        "day": field(dates), "tags": field(st.lists(texts, max_size=3)),
        "inner": field(st.fixed_dictionaries({}, optional={"when": field(date_times()), "n": field(integers)})),
        "lines": field(st.lists(st.fixed_dictionaries({}, optional={"q": field(integers), "d": field(dates)}),
                                max_size=3)),
        "extra": texts,
    })


@st.composite
def values(draw: st.DrawFn) -> bytes | None:
    if draw(st.integers(0, 20)) == 0:
        return None
    document = draw(documents)
    text = json.dumps(document, ensure_ascii=draw(st.booleans()), indent=draw(st.sampled_from([None, None, 1])))
    return b"\0" + draw(st.sampled_from([1, 1, 2])).to_bytes(4, "big") + text.encode()


def chunk(batch: list[bytes | None]) -> RecordChunk:
    n = len(batch)
    return RecordChunk("t", 0, list(range(n)), [None] * n, batch, [0] * n, [None] * n)


def decoder() -> JsonSchemaDecoder:
    return JsonSchemaDecoder(JsonSchemas(Registry()), COLUMNS)


@SETTINGS
@given(st.lists(values(), min_size=1, max_size=12))
def test_the_batch_read_and_the_reference_agree_record_for_record(batch: list[bytes | None]) -> None:
    fast = decoder().decode(chunk(batch), allow_drift=False)
    with mock.patch.object(json_schema, "batch_rows", lambda bodies, columns: None):
        slow = [decoder().decode(chunk([value]), allow_drift=False) for value in batch]
    expected_rows = [row for each in slow for row in each.rows.to_pylist()]
    expected_bad = [(i, each.bad[0].code, each.bad[0].reason) for i, each in enumerate(slow) if each.bad]
    assert [(b.index, b.code, b.reason) for b in fast.bad] == expected_bad
    assert fast.rows.to_pylist() == expected_rows
    good = [i for i, each in enumerate(slow) if not each.bad]
    assert (fast.good if fast.good is not None else list(range(len(batch)))) == good
    assert fast.rows.schema == COLUMNS


@SETTINGS
@given(st.lists(documents, min_size=1, max_size=6))
def test_what_the_batch_read_gives_the_reference_gives_too(batch: list[dict[str, Any]]) -> None:
    validator = JsonSchemas(Registry()).registered(1).validator
    valid = [d for d in batch if validator.is_valid(d)]
    if not valid:
        return
    rows = batch_rows([json.dumps(d).encode() for d in valid], COLUMNS)
    if rows is None:
        return  # the decoder converts these one by one: the test above holds it to the reference
    reference, refused = reference_rows(valid, COLUMNS)
    assert refused == {}
    assert rows.to_pylist() == reference.to_pylist()
