"""A Protobuf message's columns: the shape both decode paths follow, and its Arrow schema. Pure.

| proto | column |
|---|---|
| bool, float, double, string, bytes | boolean, float, double, string, binary |
| int32, sint32, sfixed32 / int64, sint64, sfixed64 | int / long |
| uint32, fixed32 / uint64, fixed64 | long / decimal(20, 0) (every value fits) |
| enum | string: the value's name, or the number's digits if the schema has no such value |
| message | struct, null when unset |
| repeated T / map<K, V> | list<T> / map<K, V>, empty when unset |
| oneof | each member its own column: at most one is non-null |
| google.protobuf.Timestamp | timestamptz (µs, nanoseconds truncated), years 1-9999 |
| google.protobuf.Duration | long: microseconds (Iceberg has no interval type) |
| google.protobuf.*Value (wrappers) | the wrapped type, null when unset |
| google.protobuf.Any | struct<type_url string, value binary> |
| google.protobuf.Struct, Value, ListValue | string: their proto3 JSON |

A scalar without presence (proto3 plain) is its default when unset; one with presence (proto3 `optional`, a
oneof member, proto2 `optional`) is null. Recursive messages, messages without fields and groups are
refused (SchemaError names the field): a table's columns must be finite, and a struct must have a member.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from tabletopic.decode.names import NameCollision
from tabletopic.exceptions import SchemaError

_T = FieldDescriptor
UINT64 = pa.decimal128(20, 0)
TIMESTAMP = pa.timestamp("us", tz="UTC")
ANY = pa.struct([pa.field("type_url", pa.string()), pa.field("value", pa.binary())])
_SCALARS = {
    _T.TYPE_BOOL: pa.bool_(), _T.TYPE_FLOAT: pa.float32(), _T.TYPE_DOUBLE: pa.float64(),
    _T.TYPE_STRING: pa.string(), _T.TYPE_BYTES: pa.binary(),
    _T.TYPE_INT32: pa.int32(), _T.TYPE_SINT32: pa.int32(), _T.TYPE_SFIXED32: pa.int32(),
    _T.TYPE_INT64: pa.int64(), _T.TYPE_SINT64: pa.int64(), _T.TYPE_SFIXED64: pa.int64(),
    _T.TYPE_UINT32: pa.int64(), _T.TYPE_FIXED32: pa.int64(),
    _T.TYPE_UINT64: UINT64, _T.TYPE_FIXED64: UINT64,
}
_WRAPPERS = {
    "google.protobuf.DoubleValue", "google.protobuf.FloatValue", "google.protobuf.Int64Value",
    "google.protobuf.UInt64Value", "google.protobuf.Int32Value", "google.protobuf.UInt32Value",
    "google.protobuf.BoolValue", "google.protobuf.StringValue", "google.protobuf.BytesValue",
}
_JSON = {"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"}


@dataclass(frozen=True)
class Value:
    """How one value (a singular field's, a list item, a map key or value) becomes a column value."""

    kind: str  # scalar, enum, message, timestamp, duration, wrapper, any, json
    arrow: pa.DataType
    fields: tuple[Field, ...] = ()  # message: its fields; wrapper: the one wrapped
    enum_names: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Field:
    name: str  # the proto field's name
    column: str  # the column's name (folded to lower case if the table asks)
    shape: str  # single, list or map
    presence: bool  # single only: unset is null (else the type's default)
    value: Value  # a list's items, a map's values
    key: Value | None = None  # a map's keys

    @property
    def arrow(self) -> pa.DataType:
        if self.shape == "list":
            return pa.list_(self.value.arrow)
        if self.shape == "map":
            assert self.key is not None
            return pa.map_(self.key.arrow, self.value.arrow)
        return self.value.arrow


@dataclass(frozen=True)
class MessageShape:
    fields: tuple[Field, ...]
    schema: pa.Schema
    batchable: bool  # ptars can read it (no Struct/Value/ListValue anywhere)


def message_shape(message: Descriptor, lowercase: bool = False) -> MessageShape:
    """The columns of `message`; SchemaError for what has no column type, NameCollision for two fields whose
    names fold together under `lowercase`."""
    fields = _fields(message, lowercase, "", (message.full_name,))
    schema = pa.schema([pa.field(f.column, f.arrow, nullable=True) for f in fields])
    return MessageShape(fields, schema, not any(_has_json(f) for f in fields))


def _has_json(f: Field) -> bool:
    values = [f.value] if f.key is None else [f.key, f.value]
    return any(v.kind == "json" or any(_has_json(sub) for sub in v.fields) for v in values)


def _fields(message: Descriptor, lowercase: bool, path: str, stack: tuple[str, ...]) -> tuple[Field, ...]:
    if not message.fields:
        raise SchemaError(path or "(value)", f"message {message.full_name} has no fields: a struct needs a member")
    out: list[Field] = []
    seen: dict[str, str] = {}
    for proto_field in message.fields:
        column = proto_field.name.lower() if lowercase else proto_field.name
        if column in seen:
            raise NameCollision(seen[column], proto_field.name)
        seen[column] = proto_field.name
        out.append(_field(proto_field, column, lowercase, f"{path}.{proto_field.name}" if path else proto_field.name,
                          stack))
    return tuple(out)


def _field(proto: FieldDescriptor, column: str, lowercase: bool, path: str, stack: tuple[str, ...]) -> Field:
    entry = proto.message_type
    if proto.is_repeated and entry is not None and entry.GetOptions().map_entry:
        key = _value(entry.fields_by_name["key"], lowercase, f"{path}{{}}", stack)
        value = _value(entry.fields_by_name["value"], lowercase, f"{path}{{}}", stack)
        return Field(proto.name, column, "map", False, value, key)
    if proto.is_repeated:
        return Field(proto.name, column, "list", False, _value(proto, lowercase, f"{path}[]", stack))
    return Field(proto.name, column, "single", proto.has_presence, _value(proto, lowercase, path, stack))


def _value(proto: FieldDescriptor, lowercase: bool, path: str, stack: tuple[str, ...]) -> Value:
    if proto.type == _T.TYPE_GROUP:
        raise SchemaError(path, "groups have no Iceberg column type")
    if proto.type == _T.TYPE_ENUM:
        names: dict[int, str] = {}
        for value in proto.enum_type.values:  # with allow_alias, the first declared name of a number (as ptars)
            names.setdefault(value.number, value.name)
        return Value("enum", pa.string(), enum_names=names)
    if proto.type != _T.TYPE_MESSAGE:
        return Value("scalar", _SCALARS[proto.type])
    message = proto.message_type
    name = message.full_name
    if name == "google.protobuf.Timestamp":
        return Value("timestamp", TIMESTAMP)
    if name == "google.protobuf.Duration":
        return Value("duration", pa.int64())
    if name in _WRAPPERS:
        wrapped = _value(message.fields_by_name["value"], lowercase, path, stack)
        return Value("wrapper", wrapped.arrow, fields=(Field("value", "value", "single", False, wrapped),))
    if name == "google.protobuf.Any":
        return Value("any", ANY)
    if name in _JSON:
        return Value("json", pa.string())
    if name in stack:
        raise SchemaError(path, f"message {name} contains itself: recursive messages have no Iceberg column type")
    fields = _fields(message, lowercase, path, (*stack, name))
    return Value("message", pa.struct([pa.field(f.column, f.arrow, nullable=True) for f in fields]), fields)
