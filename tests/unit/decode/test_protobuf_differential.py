"""Differential test of the Protobuf batch path (ptars) against the per-record path (python protobuf): random
batches of bodies — valid messages, wire bytes that mix known and unknown fields, wrong wire types, invalid
UTF-8, out-of-range Timestamps, truncated and garbage bodies, unknown groups nested deep, wrong message
indexes — give the same rows, value for value and in order, and the same dead letters; a value the
per-record path refuses is never a row, and no row is ever another record's."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tabletopic.decode.protobuf import ProtobufDecoder, first_value_schema
from tabletopic.decode.protobuf_schema import ProtobufSchemas
from tests.unit.decode.deadline import within
from tests.unit.decode.test_protobuf import chunk, framed, message_class, new_registry, register

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DEADLINE_S = 600

SCHEMA = '''syntax = "proto3";
package d;
import "google/protobuf/timestamp.proto";
import "google/protobuf/duration.proto";
import "google/protobuf/wrappers.proto";
import "google/protobuf/any.proto";
enum Color { RED = 0; GREEN = 1; BLUE = 2; }
message D {
  int32 i32 = 1; int64 i64 = 2; uint32 u32 = 3; uint64 u64 = 4; sint32 s32 = 5; sint64 s64 = 6;
  fixed32 fx32 = 7; fixed64 fx64 = 8; sfixed32 sf32 = 9; sfixed64 sf64 = 10;
  float f = 11; double d = 12; bool b = 13; string s = 14; bytes by = 15; Color color = 16;
  optional int32 opt = 17; optional string opt_s = 18;
  message Inner { string name = 1; repeated int64 nums = 2; Color c = 3; google.protobuf.Timestamp at = 4; }
  Inner inner = 19; repeated Inner inners = 20; map<string, Inner> by_name = 21; map<int32, string> names = 22;
  map<bool, double> flags = 23;
  oneof pick { string card = 24; int64 acct = 25; Inner nested = 26; }
  google.protobuf.Timestamp at = 27; google.protobuf.Duration took = 28;
  google.protobuf.Int64Value w_i64 = 29; google.protobuf.UInt32Value w_u32 = 30; google.protobuf.BoolValue w_b = 31;
  google.protobuf.BytesValue w_by = 32; google.protobuf.DoubleValue w_d = 33;
  google.protobuf.Any any = 34; repeated Color colors = 35; repeated float fs = 36; repeated string ss = 37;
}
message Other { string name = 1; }
'''


def _varint(number: int) -> bytes:
    number &= (1 << 64) - 1
    out = bytearray()
    while number > 0x7F:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def _tag(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


_INTS = st.one_of(st.integers(-3, 300), st.integers(-(2**63), 2**64 - 1),
                  st.sampled_from([2**31, 2**32 - 1, 253_402_300_799, 253_402_300_800, -62_135_596_801, 10**9]))
_TEXT = st.one_of(st.text(max_size=8).map(str.encode), st.binary(max_size=8))


def _entries(depth: int) -> st.SearchStrategy[bytes]:
    numbers = st.one_of(st.integers(1, 37), st.sampled_from([99, 1000, 2**29 - 1]))
    scalar = st.one_of(
        st.tuples(numbers, _INTS).map(lambda t: _tag(t[0], 0) + _varint(t[1])),
        st.tuples(numbers, st.binary(min_size=8, max_size=8)).map(lambda t: _tag(t[0], 1) + t[1]),
        st.tuples(numbers, st.binary(min_size=4, max_size=4)).map(lambda t: _tag(t[0], 5) + t[1]),
        st.tuples(numbers, _TEXT).map(lambda t: _tag(t[0], 2) + _varint(len(t[1])) + t[1]),
    )
    if depth == 0:
        return scalar
    nested = st.tuples(numbers, _message(depth - 1)).map(lambda t: _tag(t[0], 2) + _varint(len(t[1])) + t[1])
    return st.one_of(scalar, nested)


def _message(depth: int) -> st.SearchStrategy[bytes]:
    return st.lists(_entries(depth), max_size=6).map(b"".join)


def _deep_group(depth: int) -> bytes:
    return _tag(99, 3) * depth + _tag(99, 4) * depth


def _valid(draw: Any, cls: Any) -> bytes:
    """A message set through the API (what producers write)."""
    m = cls(i32=draw(st.integers(-(2**31), 2**31 - 1)), u64=draw(st.integers(0, 2**64 - 1)),
            s=draw(st.text(max_size=5)), color=draw(st.sampled_from([0, 1, 2])), f=draw(st.floats(width=32)),
            d=draw(st.floats()), colors=draw(st.lists(st.sampled_from([0, 1, 2]), max_size=3)),
            ss=draw(st.lists(st.text(max_size=3), max_size=3)))
    if draw(st.booleans()):
        m.opt = draw(st.integers(-5, 5))
    if draw(st.booleans()):
        m.inner.name = draw(st.text(max_size=3))
        m.inner.nums.extend(draw(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=3)))
        m.inner.at.FromMicroseconds(draw(st.integers(-62_135_596_800_000_000, 253_402_300_799_999_999)))
    for key in draw(st.lists(st.text(max_size=3), max_size=3)):
        m.by_name[key].c = draw(st.sampled_from([0, 1, 2]))
    for key in draw(st.lists(st.integers(-3, 3), max_size=3)):
        m.names[key] = draw(st.text(max_size=2))
    pick = draw(st.sampled_from(["none", "card", "acct", "nested"]))
    if pick == "card":
        m.card = draw(st.text(max_size=3))
    elif pick == "acct":
        m.acct = draw(st.integers(-5, 5))
    elif pick == "nested":
        m.nested.name = "n"
    if draw(st.booleans()):
        m.at.FromMicroseconds(draw(st.integers(-62_135_596_800_000_000, 253_402_300_799_999_999)))
        m.took.FromMicroseconds(draw(st.integers(-(10**12), 10**12)))
        m.w_i64.value = draw(st.integers(-(2**63), 2**63 - 1))
        m.w_u32.value = draw(st.integers(0, 2**32 - 1))
        m.w_b.value = draw(st.booleans())
        m.any.type_url = "type.googleapis.com/d.Other"
    return m.SerializeToString()


@st.composite
def _value(draw: Any, schema_id: int, cls: Any) -> bytes:
    kind = draw(st.sampled_from(["valid", "valid", "wire", "wire", "truncated", "garbage", "deep", "index",
                                 "unknown"]))
    if kind == "valid":
        return framed(schema_id, _valid(draw, cls))
    if kind == "wire":
        return framed(schema_id, draw(_message(2)))
    if kind == "truncated":
        body = _valid(draw, cls)
        return framed(schema_id, body[:draw(st.integers(0, max(len(body) - 1, 0)))])
    if kind == "garbage":
        return framed(schema_id, draw(st.binary(min_size=1, max_size=20)))
    if kind == "deep":
        return framed(schema_id, _valid(draw, cls) + _deep_group(draw(st.sampled_from([5, 64, 99, 101, 150]))))
    if kind == "index":
        return framed(schema_id, _valid(draw, cls), draw(st.sampled_from([(1,), (2,), (0, 0), (0, 3)])))
    return framed(schema_id, _valid(draw, cls) + draw(_message(1)))


def _comparable(value: Any) -> Any:
    """NaN made equal to itself (a float NaN never is), the rest as it is."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_comparable(v) for v in value]
    return value


def _rows(table: Any) -> list[Any]:
    return [_comparable(row) for row in table.to_pylist()]


def run_check_protobuf_batches() -> None:
    registry = new_registry()
    schema_id = register(registry, "d-value", SCHEMA)
    schemas = ProtobufSchemas(registry)
    cls = message_class(schemas, schema_id)
    table = first_value_schema(schemas, [framed(schema_id, b"")], False)
    assert table is not None
    checked = {"batches": 0, "batch_path": 0}
    decoder = ProtobufDecoder(schemas, table)  # no state but its plans: one for every batch

    @SETTINGS
    @given(st.lists(_value(schema_id, cls), min_size=1, max_size=8))
    def check(values: list[bytes]) -> None:
        decoded = decoder.decode(chunk(list(values)), allow_drift=False)
        each = decoder._decode_each(list(values))
        assert _rows(decoded.rows) == _rows(each.rows)
        assert decoded.rows.schema == each.rows.schema
        assert decoded.good == each.good
        assert [(b.index, b.code) for b in decoded.bad] == [(b.index, b.code) for b in each.bad]
        good = range(len(values)) if decoded.good is None else decoded.good
        for row, index in zip(decoded.rows.to_pylist(), good, strict=True):  # never another record's row
            alone = decoder._decode_each([values[index]])
            assert _rows(alone.rows) == [_comparable(row)]
        if not each.bad:  # what the per-record path takes whole, the batch path takes whole too
            batch = decoder._decode_batch(list(values))
            assert batch is not None, values
            assert _rows(batch) == _rows(each.rows) and batch.schema == each.rows.schema
            checked["batch_path"] += 1
        checked["batches"] += 1

    check()
    assert checked["batch_path"] > checked["batches"] // 10, checked


def test_batch_and_per_record_paths_agree() -> None:
    within(DEADLINE_S, run_check_protobuf_batches)
