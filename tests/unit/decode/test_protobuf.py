"""format: protobuf (issue 20): the Confluent header with its message indexes, the proto → column mapping,
presence, references resolved through the registry, evolution plans and the dead letters of every kind.
Against confluent-kafka's in-process registry (mock://), through the registry client tabletopic uses."""

from __future__ import annotations

import datetime as dt
import itertools
import subprocess
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from confluent_kafka.schema_registry import Schema, SchemaReference
from google.protobuf import message_factory
from google.protobuf.message import Message
from hypothesis import given
from hypothesis import strategies as st

from tabletopic.config import load_config
from tabletopic.core.reasons import Reason
from tabletopic.core.records import RecordChunk
from tabletopic.decode.base import SchemaDrift
from tabletopic.decode.protobuf import ProtobufDecoder, first_value_schema
from tabletopic.decode.protobuf_schema import ProtobufSchemas, ProtocUnavailable
from tabletopic.decode.protobuf_types import ANY, TIMESTAMP, UINT64
from tabletopic.decode.wire import (
    BadMessageIndexes,
    NotWireFormat,
    encode_message_indexes,
    message_indexes,
)
from tabletopic.exceptions import ConfigError, SourceUnavailable
from tabletopic.kafka.registry import RegisteredSchema, RegistryUnavailable, SchemaRegistry

_registries = itertools.count()


def new_registry() -> SchemaRegistry:
    return SchemaRegistry(f"mock://protobuf-{next(_registries)}")


def register(registry: SchemaRegistry, subject: str, text: str, references: dict[str, tuple[str, int]] | None = None,
             schema_type: str = "PROTOBUF") -> int:
    refs = [SchemaReference(name, subject, version) for name, (subject, version) in (references or {}).items()]
    return int(registry._client.register_schema(subject, Schema(text, schema_type, refs)))


def framed(schema_id: int, message: Message | bytes, indexes: tuple[int, ...] = (0,)) -> bytes:
    body = message if isinstance(message, bytes) else message.SerializeToString()
    return b"\x00" + schema_id.to_bytes(4, "big") + encode_message_indexes(indexes) + body


def message_class(schemas: ProtobufSchemas, schema_id: int, indexes: tuple[int, ...] = (0,)) -> type[Message]:
    return message_factory.GetMessageClass(schemas.compiled(schema_id).message(indexes))


def chunk(values: list[bytes | None]) -> RecordChunk:
    n = len(values)
    return RecordChunk("t", 0, list(range(n)), [None] * n, values, [0] * n, [None] * n)


def decoder_for(schemas: ProtobufSchemas, values: list[bytes | None], **options: Any) -> ProtobufDecoder:
    """A decoder whose table was made from the first value, as a new table is."""
    lowercase = options.get("lowercase", False)
    schema = first_value_schema(schemas, values, lowercase, options.get("renames"))
    assert schema is not None
    return ProtobufDecoder(schemas, schema, **options)


def both_paths(decoder: ProtobufDecoder, values: list[bytes | None]) -> pa.Table:
    """The rows, asserting the batch path took them and the per-record path gives the same."""
    batch = decoder._decode_batch(values)
    each = decoder._decode_each(values)
    assert batch is not None, "the batch path gave up"
    assert not each.bad, each.bad
    assert batch.equals(each.rows), (batch.to_pylist(), each.rows.to_pylist())
    return batch


# --- the header ---------------------------------------------------------------------------------

HEADER = b"\x00\x00\x00\x00\x07"


def test_message_index_zero_is_a_single_byte() -> None:
    assert encode_message_indexes([0]) == b"\x00"
    assert message_indexes(HEADER + b"\x00\x08\x01") == ((0,), 6)


@pytest.mark.parametrize("indexes", [(1,), (0, 2), (2, 1, 0), (300,), (0, 0)])
def test_message_indexes_round_trip(indexes: tuple[int, ...]) -> None:
    header = HEADER + encode_message_indexes(indexes)
    assert message_indexes(header + b"body") == (indexes, len(header))


@given(st.lists(st.integers(min_value=0, max_value=2**31), min_size=1, max_size=32))
def test_message_indexes_round_trip_any(indexes: list[int]) -> None:
    header = HEADER + encode_message_indexes(indexes)
    assert message_indexes(header) == (tuple(indexes), len(header))


@pytest.mark.parametrize(("value", "error"), [
    (b"\x00\x00\x00", NotWireFormat),  # too short
    (b"\x01\x00\x00\x00\x07\x00", NotWireFormat),  # magic byte
    (HEADER, NotWireFormat),  # no index array
    (HEADER + b"\x02\xff", NotWireFormat),  # cut-short varint
    (HEADER + b"\x01", BadMessageIndexes),  # a count of -1
    (HEADER + b"\x02\x01", BadMessageIndexes),  # index -1
    (HEADER + b"\x42", BadMessageIndexes),  # 33 levels
])
def test_bad_headers(value: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        message_indexes(value)


# --- the mapping ----------------------------------------------------------------------------------

KINDS = '''syntax = "proto3";
package kinds;
import "google/protobuf/timestamp.proto";
import "google/protobuf/duration.proto";
import "google/protobuf/wrappers.proto";
import "google/protobuf/any.proto";
import "google/protobuf/struct.proto";
enum Color { RED = 0; GREEN = 1; }
message Kinds {
  bool b = 1; float f = 2; double d = 3; string s = 4; bytes by = 5;
  int32 i32 = 6; sint32 si32 = 7; sfixed32 sf32 = 8; int64 i64 = 9; sint64 si64 = 10; sfixed64 sf64 = 11;
  uint32 u32 = 12; fixed32 f32 = 13; uint64 u64 = 14; fixed64 f64 = 15;
  Color color = 16;
  message Inner { string name = 1; repeated int32 nums = 2; }
  Inner inner = 17;
  repeated string tags = 18;
  map<string, Inner> by_name = 19;
  map<int64, bool> flags = 20;
  oneof choice { string card = 21; int64 account = 22; }
  optional int32 maybe = 23;
  google.protobuf.Timestamp at = 24;
  google.protobuf.Duration took = 25;
  google.protobuf.Int32Value w_i32 = 26; google.protobuf.UInt64Value w_u64 = 27; google.protobuf.StringValue w_s = 28;
  google.protobuf.Any any = 29;
  google.protobuf.Struct extra = 30;
  repeated Color colors = 31;
}
'''


def test_each_kind_has_its_column_type() -> None:
    registry = new_registry()
    schemas = ProtobufSchemas(registry)
    schema_id = register(registry, "kinds-value", KINDS)
    schema = first_value_schema(schemas, [framed(schema_id, b"")], False)
    inner = pa.struct([pa.field("name", pa.string()), pa.field("nums", pa.list_(pa.int32()))])
    assert schema == pa.schema([
        ("b", pa.bool_()), ("f", pa.float32()), ("d", pa.float64()), ("s", pa.string()), ("by", pa.binary()),
        ("i32", pa.int32()), ("si32", pa.int32()), ("sf32", pa.int32()),
        ("i64", pa.int64()), ("si64", pa.int64()), ("sf64", pa.int64()),
        ("u32", pa.int64()), ("f32", pa.int64()), ("u64", UINT64), ("f64", UINT64),
        ("color", pa.string()), ("inner", inner), ("tags", pa.list_(pa.string())),
        ("by_name", pa.map_(pa.string(), inner)), ("flags", pa.map_(pa.int64(), pa.bool_())),
        ("card", pa.string()), ("account", pa.int64()), ("maybe", pa.int32()),
        ("at", TIMESTAMP), ("took", pa.int64()),
        ("w_i32", pa.int32()), ("w_u64", UINT64), ("w_s", pa.string()),
        ("any", ANY), ("extra", pa.string()), ("colors", pa.list_(pa.string())),
    ])


def test_each_kind_decodes_to_its_value() -> None:
    registry = new_registry()
    schemas = ProtobufSchemas(registry)
    schema_id = register(registry, "kinds-value", KINDS)
    kinds = message_class(schemas, schema_id)
    full = kinds(b=True, f=0.5, d=-1.25, s="ß", by=b"\x00\xff", i32=-2**31, si32=-7, sf32=7, i64=-2**63, si64=-9,
                 sf64=9, u32=2**32 - 1, f32=1, u64=2**64 - 1, f64=2**63, color=1, tags=["a", "b"], card="4111",
                 maybe=0, colors=[1, 0])
    full.inner.name = "in"
    full.inner.nums.extend([1, 2])
    full.by_name["k"].name = "v"
    full.flags[-5] = True
    full.at.seconds, full.at.nanos = -2, 999_999_999  # 1969-12-31T23:59:58.999999 (nanoseconds truncated)
    full.took.seconds, full.took.nanos = -1, -500_999  # -1.000500 s
    full.w_i32.value = 0
    full.w_u64.value = 2**64 - 1
    full.any.type_url, full.any.value = "type.googleapis.com/x.Y", b"\x08\x01"
    full.extra.update({"k": [1, "x", None]})
    unknown_enum = kinds()
    unknown_enum.ParseFromString(b"\x80\x01\x63")  # color = 99, a number the enum lacks
    values = [framed(schema_id, full), framed(schema_id, b""), framed(schema_id, unknown_enum)]
    decoder = decoder_for(schemas, values)
    assert decoder._decode_batch(values) is None  # Struct has no batch reading: the per-record path reads it
    decoded = decoder.decode(chunk(values))
    assert not decoded.bad
    first, empty, odd = decoded.rows.to_pylist()
    assert first == {
        "b": True, "f": 0.5, "d": -1.25, "s": "ß", "by": b"\x00\xff", "i32": -2**31, "si32": -7, "sf32": 7,
        "i64": -2**63, "si64": -9, "sf64": 9, "u32": 2**32 - 1, "f32": 1, "u64": Decimal(2**64 - 1),
        "f64": Decimal(2**63), "color": "GREEN", "inner": {"name": "in", "nums": [1, 2]},
        "tags": ["a", "b"], "by_name": [("k", {"name": "v", "nums": []})], "flags": [(-5, True)],
        "card": "4111", "account": None, "maybe": 0,
        "at": dt.datetime(1969, 12, 31, 23, 59, 58, 999999, tzinfo=dt.UTC), "took": -1_000_500,
        "w_i32": 0, "w_u64": Decimal(2**64 - 1), "w_s": None,
        "any": {"type_url": "type.googleapis.com/x.Y", "value": b"\x08\x01"},
        "extra": '{"k":[1.0,"x",null]}', "colors": ["GREEN", "RED"],
    }
    # Unset: a scalar without presence is its default; with presence (optional, oneof, wrappers,
    # messages) it is null; repeated fields and maps are empty.
    assert empty == {
        "b": False, "f": 0.0, "d": 0.0, "s": "", "by": b"", "i32": 0, "si32": 0, "sf32": 0, "i64": 0, "si64": 0,
        "sf64": 0, "u32": 0, "f32": 0, "u64": Decimal(0), "f64": Decimal(0), "color": "RED", "inner": None,
        "tags": [], "by_name": [], "flags": [], "card": None, "account": None, "maybe": None, "at": None,
        "took": None, "w_i32": None, "w_u64": None, "w_s": None, "any": None, "extra": None, "colors": [],
    }
    assert odd["color"] == "99"


BATCHABLE = '''syntax = "proto3";
package b;
import "google/protobuf/timestamp.proto";
import "google/protobuf/duration.proto";
import "google/protobuf/wrappers.proto";
import "google/protobuf/any.proto";
enum Color { RED = 0; GREEN = 1; }
message Event {
  int64 id = 1; optional string note = 2; uint64 big = 3; uint32 small = 4; Color color = 5;
  message Line { string sku = 1; int32 qty = 2; google.protobuf.Timestamp at = 3; }
  repeated Line lines = 6; map<string, Line> by_sku = 7; map<int32, string> names = 8;
  oneof pay { string card = 9; int64 account = 10; }
  google.protobuf.Timestamp at = 11; google.protobuf.Duration took = 12;
  google.protobuf.UInt64Value w_u64 = 13; google.protobuf.FloatValue w_f = 14; google.protobuf.Any any = 15;
  repeated Color colors = 16; float f = 17; bytes raw = 18;
}
'''


def test_the_batch_path_gives_the_per_record_rows() -> None:
    registry = new_registry()
    schemas = ProtobufSchemas(registry)
    schema_id = register(registry, "batch-value", BATCHABLE)
    event = message_class(schemas, schema_id)
    full = event(id=1, note="", big=2**64 - 1, small=2**32 - 1, color=1, names={3: "c"}, account=-4, colors=[0, 1],
                 f=0.1, raw=b"\x00")
    full.lines.add(sku="x", qty=2).at.FromMicroseconds(-1)
    full.by_sku["k"].qty = 1
    full.at.FromMicroseconds(1_700_000_000_123_456)
    full.took.seconds, full.took.nanos = 3, -1_999
    full.w_u64.value = 0
    full.w_f.value = 1.5
    full.any.value = b"x"
    odd = event()
    odd.ParseFromString(b"\x28\x07")  # color 7
    values = [framed(schema_id, full), framed(schema_id, b""), framed(schema_id, odd)]
    rows = both_paths(decoder_for(schemas, values), values)
    assert rows.column("color").to_pylist() == ["GREEN", "RED", "7"]
    assert rows.column("big").to_pylist() == [Decimal(2**64 - 1), Decimal(0), Decimal(0)]
    assert rows.column("took").to_pylist() == [2_999_999, None, None]
    assert rows.column("note").to_pylist() == ["", None, None]


def test_refused_messages_name_the_field() -> None:
    registry = new_registry()
    schemas = ProtobufSchemas(registry)
    texts = {
        "recursive": 'syntax = "proto3"; message T { int32 v = 1; Node n = 2; } message Node { Node next = 1; }',
        "empty": 'syntax = "proto3"; message T { int32 v = 1; E e = 2; } message E {}',
        "group": 'syntax = "proto2"; message T { optional group G = 1 { optional int32 a = 2; } }',
        "fold": 'syntax = "proto3"; message T { int32 userId = 1; int32 userid = 2; }',
    }
    ids = {name: register(registry, f"{name}-value", text) for name, text in texts.items()}
    table = pa.schema([("v", pa.int32())])
    decoder = ProtobufDecoder(schemas, table, lowercase=True)
    values = [framed(schema_id, b"") for schema_id in ids.values()]
    decoded = decoder.decode(chunk(values))
    assert decoded.good == [] and [b.code for b in decoded.bad] == [Reason.INCOMPATIBLE_SCHEMA] * 4
    reasons = [b.reason for b in decoded.bad]
    assert "n.next" in reasons[0] and "contains itself" in reasons[0]
    assert "e" in reasons[1] and "no fields" in reasons[1]
    assert "groups" in reasons[2]
    assert "differ only by case" in reasons[3]


# --- references and unreadable schemas -------------------------------------------------------------

COMMON = 'syntax = "proto3"; package acme.common; message Money { string currency = 1; int64 units = 2; }'
ORDER = '''syntax = "proto3"; package acme.orders; import "acme/common.proto";
message Order { int64 id = 1; acme.common.Money total = 2; }'''


def test_references_are_resolved_recursively() -> None:
    registry = new_registry()
    base = register(registry, "acme/base.proto", 'syntax = "proto3"; package acme.base; message Id { int64 v = 1; }')
    assert base
    common = register(registry, "acme/common.proto", '''syntax = "proto3"; package acme.common;
        import "acme/base.proto"; message Money { string currency = 1; acme.base.Id id = 2; }''',
        {"acme/base.proto": ("acme/base.proto", 1)})
    assert common
    order = register(registry, "orders-value", '''syntax = "proto3"; package acme.orders;
        import "acme/common.proto"; message Order { int64 id = 1; acme.common.Money total = 2; }''',
        {"acme/common.proto": ("acme/common.proto", 1)})
    schemas = ProtobufSchemas(registry)
    cls = message_class(schemas, order)
    value = cls(id=3)
    value.total.currency = "EUR"
    value.total.id.v = 9
    values = [framed(order, value)]
    rows = both_paths(decoder_for(schemas, values), values)
    assert rows.to_pylist() == [{"id": 3, "total": {"currency": "EUR", "id": {"v": 9}}}]


def test_unreadable_schemas_are_dead_letters_never_a_crash() -> None:
    registry = new_registry()
    readable = register(registry, "ok-value", 'syntax = "proto3"; message T { int64 id = 1; }')
    missing = register(registry, "missing-value", ORDER)  # imports a file nobody registered
    dangling = register(registry, "dangling-value", ORDER, {"acme/common.proto": ("acme/common.proto", 7)})
    broken = register(registry, "broken-value", 'syntax = "proto3"; message T { strin id = 1; }')
    avro = register(registry, "avro-value", '{"type": "record", "name": "T", "fields": []}', schema_type="AVRO")
    escape = register(registry, "escape-value", ORDER, {"../common.proto": ("ok-value", 1)})
    schemas = ProtobufSchemas(registry)
    values = [framed(s, b"\x08\x01") for s in (readable, missing, dangling, broken, avro, escape)]
    decoder = decoder_for(schemas, values)
    decoded = decoder.decode(chunk(values))
    assert decoded.rows.to_pylist() == [{"id": 1}]
    assert [b.code for b in decoded.bad] == [Reason.INCOMPATIBLE_SCHEMA] * 5
    reasons = [b.reason for b in decoded.bad]
    assert "acme/common.proto" in reasons[0] and "not found" in reasons[0]
    assert "no version 7" in reasons[1]
    assert "strin" in reasons[2]
    assert "AVRO" in reasons[3]
    assert "not a relative import path" in reasons[4]


def test_unknown_ids_indexes_and_garbage_are_named() -> None:
    registry = new_registry()
    schema_id = register(registry, "t-value",
                         'syntax = "proto3"; message T { int64 id = 1; message N { int32 x = 1; } }')
    schemas = ProtobufSchemas(registry)
    values = [
        framed(schema_id, b"\x08\x05"),
        framed(schema_id, b"\x08\x05", (3,)),  # no 4th message
        framed(schema_id, b"\x08\x05", (0, 1)),  # T has one nested message
        HEADER[:1] + schema_id.to_bytes(4, "big") + b"\x01",  # a count of -1
        framed(schema_id, b"\x0a\xff\xff"),  # a length past the end
        framed(schema_id + 100, b"\x08\x05"),
        b'{"id": 1}',
        None,
    ]
    decoder = decoder_for(schemas, values)
    decoded = decoder.decode(chunk(values))
    assert decoded.good == [0, 7]
    assert decoded.rows.to_pylist() == [{"id": 5}, {"id": None}]
    assert [(b.index, b.code) for b in decoded.bad] == [
        (1, Reason.UNKNOWN_MESSAGE_INDEX), (2, Reason.UNKNOWN_MESSAGE_INDEX), (3, Reason.UNKNOWN_MESSAGE_INDEX),
        (4, Reason.UNDECODABLE_PROTOBUF), (5, Reason.UNKNOWN_SCHEMA_ID), (6, Reason.NOT_WIRE_FORMAT),
    ]


def test_nested_message_by_index() -> None:
    registry = new_registry()
    schema_id = register(registry, "t-value", '''syntax = "proto3"; message A { int32 a = 1; }
        message B { int32 b = 1; message C { string c = 1; } }''')
    schemas = ProtobufSchemas(registry)
    c = message_class(schemas, schema_id, (1, 0))(c="deep")
    values = [framed(schema_id, c, (1, 0))]
    assert both_paths(decoder_for(schemas, values), values).to_pylist() == [{"c": "deep"}]


class _Down:
    def schema_text(self, schema_id: int) -> str:
        raise RegistryUnavailable("down")

    def registered(self, schema_id: int) -> RegisteredSchema:
        raise RegistryUnavailable("down")

    def registered_version(self, subject: str, version: int) -> RegisteredSchema:
        raise RegistryUnavailable("down")


def test_a_registry_that_does_not_answer_is_retried_not_a_dead_letter() -> None:
    decoder = ProtobufDecoder(ProtobufSchemas(_Down()), pa.schema([("id", pa.int64())]))
    with pytest.raises(SourceUnavailable):
        decoder.decode(chunk([framed(1, b"")]))


# --- evolution ----------------------------------------------------------------------------------------

V1 = 'syntax = "proto3"; package e; message E { int32 id = 1; string name = 2; }'
V2 = 'syntax = "proto3"; package e; message E { int64 id = 1; string name = 2; float score = 3; }'
V3 = 'syntax = "proto3"; package e; message E { string id = 1; }'


def test_new_fields_and_widening_evolve_the_table_first() -> None:
    registry = new_registry()
    v1, v2 = register(registry, "e-value", V1), register(registry, "e-value", V2)
    schemas = ProtobufSchemas(registry)
    first = framed(v1, message_class(schemas, v1)(id=1, name="a"))
    second = framed(v2, message_class(schemas, v2)(id=2**40, name="b", score=0.5))
    decoder = decoder_for(schemas, [first])
    with pytest.raises(SchemaDrift) as drift:
        decoder.decode(chunk([first, second]))
    assert drift.value.incoming == pa.schema([("id", pa.int64()), ("name", pa.string()), ("score", pa.float32())])
    evolved = ProtobufDecoder(schemas, drift.value.incoming)
    rows = both_paths(evolved, [first, second])
    assert rows.to_pylist() == [{"id": 1, "name": "a", "score": None}, {"id": 2**40, "name": "b", "score": 0.5}]


def test_an_incompatible_change_makes_dead_letters() -> None:
    registry = new_registry()
    v1, v3 = register(registry, "e-value", V1), register(registry, "e2-value", V3)
    schemas = ProtobufSchemas(registry)
    first = framed(v1, message_class(schemas, v1)(id=1, name="a"))
    changed = framed(v3, message_class(schemas, v3)(id="x"))
    decoded = decoder_for(schemas, [first]).decode(chunk([first, changed]))
    assert decoded.good == [0]
    assert decoded.bad[0].code == Reason.INCOMPATIBLE_SCHEMA and "id" in decoded.bad[0].reason


# --- names and limits -----------------------------------------------------------------------------------

def test_lowercase_and_renames_apply_at_every_level_they_should() -> None:
    registry = new_registry()
    schema_id = register(registry, "n-value", '''syntax = "proto3";
        message N { int32 userId = 1; message In { string ZipCode = 1; } In Address = 2; string old = 3; }''')
    schemas = ProtobufSchemas(registry)
    cls = message_class(schemas, schema_id)
    value = cls(userId=4, old="o")
    value.Address.ZipCode = "123"
    values = [framed(schema_id, value)]
    decoder = decoder_for(schemas, values, lowercase=True, renames={"old": "new"})
    assert decoder.schema.names == ["userid", "address", "new"]
    assert both_paths(decoder, values).to_pylist() == [{"userid": 4, "address": {"zipcode": "123"}, "new": "o"}]


def test_too_many_items_and_out_of_range_times_are_dead_letters() -> None:
    registry = new_registry()
    schema_id = register(registry, "l-value", '''syntax = "proto3"; import "google/protobuf/timestamp.proto";
        message L { repeated int32 nums = 1; google.protobuf.Timestamp at = 2; map<string, int32> m = 3; }''')
    schemas = ProtobufSchemas(registry)
    cls = message_class(schemas, schema_id)
    late = cls()
    late.at.seconds = 253_402_300_800  # 10000-01-01
    values = [framed(schema_id, cls(nums=[1, 2, 3])), framed(schema_id, cls(nums=[1])), framed(schema_id, late),
              framed(schema_id, cls(m={"a": 1, "b": 2, "c": 3}))]
    decoder = decoder_for(schemas, values, max_items=2)
    assert decoder._decode_batch(values) is None
    decoded = decoder.decode(chunk(values))
    assert decoded.good == [1]
    assert [(b.index, b.code) for b in decoded.bad] == [
        (0, Reason.TOO_MANY_ITEMS), (2, Reason.TYPE_MISMATCH), (3, Reason.TOO_MANY_ITEMS)]


# --- config ---------------------------------------------------------------------------------------------

_KAFKA = {"bootstrap.servers": "127.0.0.1:9092"}
_REGISTRY = {"url": "http://127.0.0.1:8081"}


@pytest.mark.parametrize(("table", "registry", "key"), [
    ({}, None, "schema_registry.url"),
    ({"mode": "upsert", "key": ["id"]}, _REGISTRY, "tables[0].key_format"),  # Protobuf keys are not read yet
    ({"envelope": "debezium", "key_format": "json"}, _REGISTRY, "tables[0].envelope"),
])
def test_config_refuses_what_protobuf_tables_cannot_do(table: dict[str, Any], registry: dict[str, str] | None,
                                                       key: str) -> None:
    tables = [{"table": "ns.e", "topic": "e", "format": "protobuf", **table}]
    flags: dict[str, Any] = {"kafka": _KAFKA, "tables": tables}
    if registry is not None:
        flags["schema_registry"] = registry
    with pytest.raises(ConfigError) as caught:
        load_config(flags=flags, environ={})
    assert caught.value.key == key


def test_config_takes_a_protobuf_table() -> None:
    tables = [{"table": "ns.e", "topic": "e", "format": "protobuf"},
              {"table": "ns.u", "topic": "u", "format": "protobuf", "mode": "upsert", "key": ["id"],
               "key_format": "string"}]
    config = load_config(flags={"kafka": _KAFKA, "schema_registry": _REGISTRY, "tables": tables}, environ={})
    assert [t.format for t in config.tables] == ["protobuf", "protobuf"]
    assert config.tables[1].upsert is not None and config.tables[1].upsert.key_format == "string"


# --- review findings --------------------------------------------------------------------------------

COLLIDING = '''syntax = "proto3";
package c;
message Outer { message Inner { int64 a = 1; int64 b = 2; } int64 x = 1; }
message Outer_Inner { int64 b = 1; int64 a = 2; }
enum Al { option allow_alias = true; ZERO = 0; ONE = 1; UNO = 1; }
message AliasHolder { Al e = 1; }
'''


@pytest.mark.parametrize(("first", "second"), [((0, 0), (1,)), ((1,), (0, 0))])
def test_messages_whose_names_flatten_alike_never_share_a_batch_reader(first, second) -> None:
    registry = new_registry()
    sid = register(registry, "c-value", COLLIDING)
    schemas = ProtobufSchemas(registry)
    decoder = decoder_for(schemas, [framed(sid, b"", first)])
    decoder.decode(chunk([framed(sid, b"", first)]), allow_drift=False)  # the first message's reader is made
    value = framed(sid, message_class(schemas, sid, second)(a=1, b=2), second)
    assert both_paths(decoder, [value]).to_pylist() == [{"a": 1, "b": 2}]


def test_an_aliased_enum_number_reads_as_its_first_name_on_both_paths() -> None:
    registry = new_registry()
    sid = register(registry, "c-value", COLLIDING)
    schemas = ProtobufSchemas(registry)
    value = framed(sid, message_class(schemas, sid, (2,))(e=1), (2,))
    assert both_paths(decoder_for(schemas, [value]), [value]).to_pylist() == [{"e": "ONE"}]


def test_a_protoc_that_cannot_answer_is_retried_never_a_dead_letter(monkeypatch) -> None:
    from tabletopic.decode import protobuf_schema

    registry = new_registry()
    sid = register(registry, "t-value", 'syntax = "proto3"; message T { int64 id = 1; }')
    schemas = ProtobufSchemas(registry)
    real_run = protobuf_schema.subprocess.run
    for fault in (subprocess.TimeoutExpired("protoc", 30), OSError(12, "Cannot allocate memory")):
        def failing(*args: Any, fault: Exception = fault, **kwargs: Any) -> Any:
            raise fault
        monkeypatch.setattr(protobuf_schema.subprocess, "run", failing)
        with pytest.raises(ProtocUnavailable):
            schemas.compiled(sid)
    monkeypatch.setattr(protobuf_schema.subprocess, "run",
                        lambda *a, **k: subprocess.CompletedProcess(a, -9, "", ""))
    with pytest.raises(ProtocUnavailable):
        schemas.compiled(sid)
    monkeypatch.setattr(protobuf_schema.subprocess, "run", real_run)
    values = [framed(sid, b"\x08\x05")]
    assert decoder_for(schemas, values).decode(chunk(values)).rows.to_pylist() == [{"id": 5}]


def test_an_import_registered_later_is_read_without_a_restart(monkeypatch) -> None:
    from tabletopic.decode import protobuf_schema

    registry = new_registry()
    readable = register(registry, "ok-value", 'syntax = "proto3"; message T { int64 id = 1; }')
    order = register(registry, "orders-value", ORDER, {"acme/common.proto": ("acme/common.proto", 1)})
    schemas = ProtobufSchemas(registry)
    values = [framed(readable, b"\x08\x01"), framed(order, b"\x08\x02")]
    decoder = decoder_for(schemas, values[:1])
    assert [b.code for b in decoder.decode(chunk(values)).bad] == [Reason.INCOMPATIBLE_SCHEMA]
    register(registry, "acme/common.proto", COMMON)
    monkeypatch.setattr(protobuf_schema, "MISSING_REFERENCE_RETRY_S", 0.0)
    with pytest.raises(SchemaDrift):  # readable now: its fields evolve the table first
        decoder.decode(chunk(values))
