"""Column renames (`rename_columns: {source_field: column_name}`): top-level fields of a record's value
take another name before they meet the table. Pure.

Applied after `column_names: lowercase` (a source name is matched against the folded field name).
Nested fields keep their names. A value holding both a renamed field and a field already named as its
target is a bad record (`rename_collision`): keeping either would drop the other's value.

JSON values are rewritten only in their top-level keys, every other byte as it came (numbers keep their
text, so a decimal column loses no digit); Avro records and writer schemas are renamed along their
top-level fields.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyarrow as pa

from tabletopic.core.reasons import Reason
from tabletopic.core.records import RecordChunk
from tabletopic.decode.base import BadValue
from tabletopic.decode.json_guard import is_too_deep

Renames = Mapping[str, str]

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


class RenameCollision(ValueError):
    def __init__(self, source: str, target: str) -> None:
        super().__init__(f"fields {source!r} and {target!r} both present: rename_columns maps {source!r} "
                         f"onto {target!r}")
        self.source = source
        self.target = target


def column_renames(rename_columns: Mapping[str, str], lowercase: bool) -> dict[str, str]:
    """The renames a decoder applies: with `lowercase`, each source name folded as the field names are."""
    return {(source.lower() if lowercase else source): target for source, target in rename_columns.items()}


def collision_in(names: set[str] | list[str], renames: Renames) -> RenameCollision | None:
    """The first renamed field of `names` whose target is among `names` too, or None."""
    present = set(names)
    for source, target in renames.items():
        if source in present and target in present:
            return RenameCollision(source, target)
    return None


def rename_record(record: dict[str, Any], renames: Renames) -> dict[str, Any]:
    """A decoded record with its top-level fields renamed; RenameCollision if it holds a source and its target."""
    if not any(source in record for source in renames):
        return record
    collision = collision_in(list(record), renames)
    if collision is not None:
        raise collision
    return {renames.get(name, name): value for name, value in record.items()}


def renamed_schema(schema: pa.Schema, renames: Renames) -> pa.Schema:
    """`schema` with its top-level fields renamed; RenameCollision if it has a source and its target."""
    if not renames or not any(name in renames for name in schema.names):
        return schema
    collision = collision_in(schema.names, renames)
    if collision is not None:
        raise collision
    return pa.schema([f.with_name(renames.get(f.name, f.name)) for f in schema], metadata=schema.metadata)


def source_schema(schema: pa.Schema, renames: Renames) -> pa.Schema:
    """The table's value `schema` under the fields' source names: what a value holds before renaming."""
    if not renames:
        return schema
    back = {target: source for source, target in renames.items()}
    return pa.schema([f.with_name(back.get(f.name, f.name)) for f in schema], metadata=schema.metadata)


def rename_table(rows: pa.Table, renames: Renames) -> pa.Table:
    """Decoded rows with their top-level columns renamed (a collision is refused before this)."""
    if not any(name in renames for name in rows.column_names):
        return rows
    return rows.rename_columns([renames.get(name, name) for name in rows.column_names])


def rename_json(value: bytes, renames: Renames) -> bytes:
    """`value` with its top-level keys renamed, every other byte kept; RenameCollision if it holds a source
    field and its target. A value that is not one well-formed JSON object at the top (or is too deep to
    walk safely) is returned as it is: the decoder names what is wrong with it."""
    if not renames or not _may_hold(value, renames) or is_too_deep(value):
        return value
    try:
        text = value.decode("utf-8")
        spans = _top_level_keys(text)
    except (ValueError, UnicodeDecodeError):
        return value
    if spans is None:
        return value
    collision = collision_in([name for name, _, _ in spans], renames)
    if collision is not None:
        raise collision
    parts: list[str] = []
    last = 0
    for name, start, end in spans:
        if name in renames:
            parts += [text[last:start], json.dumps(renames[name])]
            last = end
    if not parts:
        return value
    parts.append(text[last:])
    return "".join(parts).encode("utf-8")


def _may_hold(value: bytes, renames: Renames) -> bool:
    """Whether a source name may be a key of `value`: it appears quoted, or a key may be escaped."""
    return b"\\" in value or any(json.dumps(source, ensure_ascii=False).encode() in value for source in renames)


def _top_level_keys(text: str) -> list[tuple[str, int, int]] | None:
    """(name, start, end) of each top-level key token of the object `text` starts with; None if `text`
    does not start with a well-formed object. Values are skipped by the json module's scanner."""
    at = _WHITESPACE.match(text, 0).end()  # type: ignore[union-attr]
    if text[at:at + 1] != "{":
        return None
    at = _WHITESPACE.match(text, at + 1).end()  # type: ignore[union-attr]
    spans: list[tuple[str, int, int]] = []
    if text[at:at + 1] == "}":
        return spans
    while True:
        if text[at:at + 1] != '"':
            return None
        name, end = json.decoder.scanstring(text, at + 1)  # type: ignore[attr-defined]
        spans.append((name, at, end))
        at = _WHITESPACE.match(text, end).end()  # type: ignore[union-attr]
        if text[at:at + 1] != ":":
            return None
        at = _WHITESPACE.match(text, at + 1).end()  # type: ignore[union-attr]
        _, at = _DECODER.raw_decode(text, at)
        at = _WHITESPACE.match(text, at).end()  # type: ignore[union-attr]
        separator = text[at:at + 1]
        if separator == "}":
            return spans
        if separator != ",":
            return None
        at = _WHITESPACE.match(text, at + 1).end()  # type: ignore[union-attr]


def renamed_json_chunk(chunk: RecordChunk, renames: Renames, skip: set[int]) -> tuple[RecordChunk, list[BadValue]]:
    """A JSON chunk with each value's top-level fields renamed (rename_json); the records holding a renamed
    field and its target are bad (`rename_collision`) and keep their value. `skip`: indices already bad."""
    if not renames:
        return chunk, []
    values, bad = _renamed_each(chunk.values, skip, lambda value: rename_json(value, renames), "")
    return dataclasses.replace(chunk, values=values), bad


def renamed_json_keys(chunk: RecordChunk, renames: Renames, skip: set[int]) -> tuple[RecordChunk, list[BadValue]]:
    """An upsert chunk's JSON Kafka keys with their fields renamed as the values' are, so a key field and the
    value field it matches stay one column; a key holding a renamed field and its target is bad."""
    keys, bad = _renamed_each(chunk.keys, skip, lambda key: _rename_key(key, renames), "the Kafka key: ")
    return dataclasses.replace(chunk, keys=keys), bad


def _renamed_each(items: Sequence[bytes | None], skip: set[int], rename: Callable[[bytes], bytes],
                  said: str) -> tuple[list[bytes | None], list[BadValue]]:
    renamed: list[bytes | None] = []
    bad: list[BadValue] = []
    for index, item in enumerate(items):
        if item is None or index in skip:
            renamed.append(item)
            continue
        try:
            renamed.append(rename(item))
        except RenameCollision as exc:
            renamed.append(item)
            bad.append(BadValue(index, f"{said}{exc}", Reason.RENAME_COLLISION))
    return renamed, bad


def source_names(columns: list[str], renames: Renames) -> list[str]:
    """Column names as the fields are named in a value before renaming."""
    if not renames:
        return columns
    back = {target: source for source, target in renames.items()}
    return [back.get(name, name) for name in columns]


_CONNECT_WRAPPER = {"schema", "payload"}


def _rename_key(key: bytes, renames: Renames) -> bytes:
    """A JSON key renamed; one wrapped by Kafka Connect ({"schema": ..., "payload": {...}}) in its payload."""
    if not _may_hold(key, renames) or b'"payload"' not in key or is_too_deep(key):
        return rename_json(key, renames)
    try:
        parsed = json.loads(key)
    except (ValueError, UnicodeDecodeError):
        return key
    if not (isinstance(parsed, dict) and set(parsed) == _CONNECT_WRAPPER and isinstance(parsed["payload"], dict)):
        return rename_json(key, renames)
    payload = rename_record(parsed["payload"], renames)
    return json.dumps({**parsed, "payload": payload}, ensure_ascii=False, separators=(",", ":")).encode()
