"""Column-name normalisation (`column_names: lowercase`): field names folded to lower case before
they meet the table, so `userId` and `UserID` are one column. Pure.

JSON values are rewritten with lower-case keys (map columns keep their keys); Avro records are
renamed along their writer schema. Two keys of one object that fold to the same name make the
record a bad one (`incompatible_schema`): keeping either would drop the other's value.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from tabletopic.decode.json_guard import is_too_deep

Rename = Callable[[Any], Any]


class NameCollision(ValueError):
    def __init__(self, first: str, second: str) -> None:
        super().__init__(f"fields {first!r} and {second!r} differ only by case (column_names: lowercase)")


def lowercase_json(value: bytes, schema: pa.Schema) -> bytes:
    """`value` with every object key in lower case, except inside map columns; unparseable values (and
    values too deep to parse safely: the decoder refuses them) as they are."""
    if is_too_deep(value):
        return value
    try:
        parsed = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return value
    if not isinstance(parsed, dict):
        return value
    return json.dumps(_lower_object(parsed, pa.struct(list(schema))), ensure_ascii=False,
                      separators=(",", ":")).encode()


def _lower_object(obj: dict[str, Any], struct: pa.DataType | None) -> dict[str, Any]:
    fields = {} if struct is None or not pa.types.is_struct(struct) else {
        struct.field(i).name.lower(): struct.field(i).type for i in range(struct.num_fields)}
    out: dict[str, Any] = {}
    originals: dict[str, str] = {}
    for key, item in obj.items():
        name = key.lower()
        if name in out:
            raise NameCollision(originals[name], key)
        originals[name] = key
        out[name] = _lower_value(item, fields.get(name))
    return out


def _lower_value(value: Any, data_type: pa.DataType | None) -> Any:
    if isinstance(value, dict):
        if data_type is not None and pa.types.is_map(data_type):
            return {k: _lower_value(v, data_type.item_type) for k, v in value.items()}
        return _lower_object(value, data_type)
    if isinstance(value, list):
        item = data_type.value_type if data_type is not None and _is_list(data_type) else None
        return [_lower_value(v, item) for v in value]
    return value


def _is_list(data_type: pa.DataType) -> bool:
    return pa.types.is_list(data_type) or pa.types.is_large_list(data_type)


def avro_renamer(schema: Any) -> Rename | None:
    """A function renaming a decoded Avro value's record fields to lower case; None when nothing needs it."""
    if isinstance(schema, str):
        return None
    if isinstance(schema, list):
        branches = [b for b in schema if b != "null"]
        inner = avro_renamer(branches[0]) if len(branches) == 1 else None
        return None if inner is None else (lambda v: None if v is None else inner(v))
    kind = schema.get("type")
    if kind == "record":
        fields = [(f["name"], f["name"].lower(), avro_renamer(f["type"])) for f in schema["fields"]]
        lowered = [low for _, low, _ in fields]
        if len(set(lowered)) != len(lowered):
            names = [name for name, _, _ in fields]
            raise NameCollision(*sorted(names, key=str.lower)[:2])
        return lambda v: {low: (r(v[name]) if r is not None else v[name]) if name in v else None
                          for name, low, r in fields}
    if kind == "array":
        items = avro_renamer(schema["items"])
        return None if items is None else (lambda v: [items(x) for x in v])
    if kind == "map":
        values = avro_renamer(schema["values"])
        return None if values is None else (lambda v: {k: values(x) for k, x in v.items()})
    return None


def lowercase_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([f.with_name(f.name.lower()).with_type(_lower_type(f.type)) for f in schema])


def _lower_type(data_type: pa.DataType) -> pa.DataType:
    if pa.types.is_struct(data_type):
        return pa.struct([data_type.field(i).with_name(data_type.field(i).name.lower())
                          .with_type(_lower_type(data_type.field(i).type)) for i in range(data_type.num_fields)])
    if _is_list(data_type):
        return pa.list_(data_type.value_field.with_type(_lower_type(data_type.value_type)))
    if pa.types.is_map(data_type):
        return pa.map_(data_type.key_field, data_type.item_field.with_type(_lower_type(data_type.item_type)))
    return data_type
