"""A registered JSON Schema → the Arrow (Iceberg) schema of its records' columns. Pure.

| JSON Schema | column |
|---|---|
| `string` | string; with `format: date-time` timestamptz (µs, UTC), with `format: date` date; any other format string |
| `integer` / `number` / `boolean` | long / double / boolean |
| `object` with `properties` | struct of those properties |
| `object` with only an `additionalProperties` schema | map<string, that schema's type> |
| `array` with an `items` schema | list |
| `enum` / `const` of strings (or of integers) | string (long) |
| `["T", "null"]`, `oneOf`/`anyOf` of `{"type": "null"}` and one other schema | that schema's type, nullable |
| `allOf` of one schema | that schema's type |
| `$ref` to `#/...` in the same document (`$defs`, `definitions`) | the referenced schema's type |

Every column is optional, as for Avro (decode/avro.py): `required` only validates. A required column
would make the table refuse the rows of any later schema version that relaxes the requirement, and
Iceberg cannot make an optional column required again.

Fields a schema does not describe (`additionalProperties`, `true` by default, and `patternProperties`)
are not columns, whatever the table's `json_drift`: the registered schema is the table's contract,
and a field it does not type could only be typed by guessing from the first values seen, which is the
very thing a registered schema is there to avoid. The decoder drops them and counts the records that
had them (Decoded.dropped_fields).

Refused, with a SchemaError naming the field's path (the records of such a schema are dead letters
`incompatible_schema`): a field with no `type` (and no `properties`, `items`, `enum` or `const` that
says it), a union of two non-null types (`["string", "integer"]`, a `oneOf` of two objects), `allOf`
of several schemas, tuple arrays (`items` as a list, `prefixItems`), an object with neither
`properties` nor an `additionalProperties` schema (free-form: no columns), a `$ref` to another
document (the registry's `references`) or one that refers back to itself, a `$ref` beside type
keywords of its own, and nesting deeper than MAX_DEPTH.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from tabletopic.decode.json_guard import MAX_DEPTH, name_problem
from tabletopic.exceptions import SchemaError

ROOT = "(value)"

_PRIMITIVES = {"integer": pa.int64(), "number": pa.float64(), "boolean": pa.bool_()}
_FORMATS = {"date-time": pa.timestamp("us", tz="UTC"), "date": pa.date32()}
# Keywords that say what a schema's values are: beside a $ref they would have to be merged with its target.
_TYPE_KEYWORDS = ("type", "properties", "items", "additionalProperties", "oneOf", "anyOf", "allOf", "enum", "const")
_NULL = {"type": "null"}


def arrow_schema_of(document: Any) -> pa.Schema:
    """The columns of the records of JSON Schema `document` (parsed JSON); SchemaError names what has none."""
    mapper = _Mapper(document)
    root, seen = mapper.resolve(document, ROOT, ())
    if not isinstance(root, Mapping) or not root.get("properties") or _single_type(root, ROOT) not in (None, "object"):
        raise SchemaError(ROOT, "the schema does not describe an object with properties: its records have no columns")
    return pa.schema(mapper.fields(root, "", seen, 0))


class _Mapper:
    def __init__(self, document: Any) -> None:
        self._document = document

    def resolve(self, node: Any, path: str, seen: tuple[str, ...]) -> tuple[Any, tuple[str, ...]]:
        """`node` with its `$ref` (and its target's, in turn) followed, and the refs being expanded with those
        added: a ref met again below its own expansion is a recursive type."""
        while isinstance(node, Mapping) and "$ref" in node:
            ref = node["$ref"]
            if not isinstance(ref, str) or not ref.startswith("#"):
                raise SchemaError(path, f"$ref {ref!r} points outside the schema (references to other schemas "
                                        "are not supported)")
            if ref in seen:
                raise SchemaError(path, f"$ref {ref!r} refers back to itself: a recursive type has no Iceberg "
                                        "column type")
            beside = [k for k in _TYPE_KEYWORDS if k in node]
            if beside:
                raise SchemaError(path, f"$ref {ref!r} beside {beside}: only a $ref alone is mapped")
            seen = (*seen, ref)
            node = self._pointer(ref, path)
        return node, seen

    def _pointer(self, ref: str, path: str) -> Any:
        node = self._document
        for part in ref[1:].split("/")[1:] if ref != "#" else []:
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise SchemaError(path, f"$ref {ref!r} points at nothing in the schema")
        return node

    def fields(self, node: Mapping[str, Any], prefix: str, seen: tuple[str, ...], depth: int) -> list[pa.Field]:
        properties = node["properties"]
        if not isinstance(properties, Mapping):
            raise SchemaError(prefix.rstrip(".") or ROOT, "`properties` is not an object")
        fields = []
        for name, child in properties.items():
            path = f"{prefix}{name}"
            problem = name_problem(name)
            if problem is not None:
                raise SchemaError(path, problem)
            fields.append(pa.field(name, self.arrow_type(child, path, seen, depth + 1), nullable=True))
        return fields

    def arrow_type(self, node: Any, path: str, seen: tuple[str, ...], depth: int) -> pa.DataType:
        if depth > MAX_DEPTH:
            raise SchemaError(path, f"nested deeper than {MAX_DEPTH} levels")
        node, seen = self.resolve(node, path, seen)
        if not isinstance(node, Mapping):
            raise SchemaError(path, f"schema {node!r:.60} says nothing of the field's type")
        branch = self._only_branch(node, path, seen)
        if branch is not None:
            return self.arrow_type(branch, path, seen, depth)
        kind = _single_type(node, path)
        if kind is None:
            kind = _implied_type(node, path)
        if kind == "string":
            return _FORMATS.get(node.get("format", ""), pa.string())
        if kind in _PRIMITIVES:
            return _PRIMITIVES[kind]
        if kind == "object":
            return self._object_type(node, path, seen, depth)
        if kind == "array":
            return self._array_type(node, path, seen, depth)
        raise SchemaError(path, f"JSON Schema type {kind!r} has no Iceberg column type")

    def _only_branch(self, node: Mapping[str, Any], path: str, seen: tuple[str, ...]) -> Any | None:
        """The one schema of a `oneOf`/`anyOf` with null (or an `allOf` of one); None if there is no such keyword."""
        for keyword in ("oneOf", "anyOf", "allOf"):
            if keyword not in node:
                continue
            branches = node[keyword]
            if not isinstance(branches, list) or not branches:
                raise SchemaError(path, f"`{keyword}` is not a list of schemas")
            if keyword != "allOf":
                branches = [b for b in branches if not _is_null(self.resolve(b, path, seen)[0])]
            if len(branches) != 1:
                raise SchemaError(path, f"`{keyword}` of {len(branches)} schemas has no Iceberg column type: only "
                                        "one schema (with or without null) maps to one")
            return branches[0]
        return None

    def _object_type(self, node: Mapping[str, Any], path: str, seen: tuple[str, ...], depth: int) -> pa.DataType:
        if node.get("properties"):
            return pa.struct(self.fields(node, f"{path}.", seen, depth))
        values = node.get("additionalProperties")
        if isinstance(values, Mapping):
            return pa.map_(pa.string(), self.arrow_type(values, f"{path}{{}}", seen, depth + 1))
        raise SchemaError(path, "an object with neither `properties` nor an `additionalProperties` schema "
                                "(free-form) has no columns")

    def _array_type(self, node: Mapping[str, Any], path: str, seen: tuple[str, ...], depth: int) -> pa.DataType:
        items = node.get("items")
        if "prefixItems" in node or isinstance(items, list):
            raise SchemaError(path, "a tuple array (items by position) has no Iceberg column type")
        if not isinstance(items, Mapping):
            raise SchemaError(path, "an array without an `items` schema has no column type for its items")
        return pa.list_(self.arrow_type(items, f"{path}[]", seen, depth + 1))


def _single_type(node: Mapping[str, Any], path: str) -> str | None:
    """The schema's one non-null `type`; None if it has no `type`."""
    kind = node.get("type")
    if kind is None:
        return None
    kinds = [kind] if isinstance(kind, str) else kind
    if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
        raise SchemaError(path, f"`type` {kind!r:.60} is neither a type name nor a list of them")
    named = [k for k in kinds if k != "null"]
    if len(named) != 1:
        raise SchemaError(path, f"type {kinds} has no Iceberg column type: only one type (with or without null) "
                                "maps to one")
    return named[0]


def _implied_type(node: Mapping[str, Any], path: str) -> str:
    """The type a schema without `type` says by its other keywords."""
    if "properties" in node or isinstance(node.get("additionalProperties"), Mapping):
        return "object"
    if "items" in node or "prefixItems" in node:
        return "array"
    values = node["enum"] if isinstance(node.get("enum"), list) else [node["const"]] if "const" in node else None
    if values:
        present = [v for v in values if v is not None]
        if present and all(isinstance(v, str) for v in present):
            return "string"
        if present and all(type(v) is int for v in present):
            return "integer"
        raise SchemaError(path, "an `enum` or `const` of mixed or non-scalar values has no Iceberg column type")
    raise SchemaError(path, "a field without `type` has no Iceberg column type")


def _is_null(node: Any) -> bool:
    return isinstance(node, Mapping) and (node == _NULL or node.get("type") == "null" or node.get("const", 1) is None)
