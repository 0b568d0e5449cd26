"""What one Avro record may make the decoder build, decided on its bytes before any value is made.

A few bytes can declare a huge array: Avro writes an array or map as blocks of `count, items`, and an
item of a type that takes no bytes (null, fixed of size 0, a record of such fields) costs nothing on
the wire, so 12 bytes could ask for 10^9 items. avro.py refuses schemas with such array items
(`may_be_empty`). Every other array item and map entry takes at least one byte (or more: the schema's
floor), so a body of n bytes holds at most n // floor items: only a body longer than `max_items` *
floor bytes can go past the cap, and only such a body is walked (`items_refusal`), block count by
block count, without making a value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tabletopic.core.reasons import Reason

_SIZES = {"null": 0, "boolean": 1, "float": 4, "double": 8}
_MIN_SIZES = {**_SIZES, "int": 1, "long": 1, "string": 1, "bytes": 1}
_VARINTS = frozenset({"int", "long", "enum"})
_LENGTH_PREFIXED = frozenset({"string", "bytes"})


class TooManyItems(Exception):
    """The record's arrays and maps hold more items than the table's `max_items`."""


class Malformed(Exception):
    """The body is not a record of its schema (found while counting; the reader would fail on it too)."""


def may_be_empty(schema: Any) -> bool:
    """Whether a value of this type can be written in zero bytes. A reference to a named type counts
    as one (the references met here are refused elsewhere; this way they can never amplify)."""
    return _min_size(schema) == 0


def _min_size(schema: Any) -> int:
    """The fewest bytes a value of this (fastavro-parsed) type takes; a named type's reference: 0."""
    if isinstance(schema, str):
        return _MIN_SIZES.get(schema, 0)
    if isinstance(schema, list):
        return 1 + min((_min_size(b) for b in schema), default=0)  # the branch index, then the branch
    kind = schema.get("type")
    if kind == "record":
        return sum(_min_size(field["type"]) for field in schema.get("fields", []))
    if kind in ("array", "map", "enum"):
        return 1  # an empty array's block count, an enum's index
    if kind == "fixed":
        return int(schema.get("size", 0))
    return _min_size(kind)


def _item_floor(schema: Any) -> int | None:
    """The fewest bytes any array item or map entry of the schema takes (nested collections as empty
    ones: so a body of n bytes holds at most n // floor items in all); None if it has no collection;
    0 if it refers to a named type (not followed: every body is walked then)."""
    if isinstance(schema, str):
        return None if schema in _MIN_SIZES else 0
    if isinstance(schema, list):
        return _least(_item_floor(b) for b in schema)
    kind = schema.get("type")
    if kind == "record":
        return _least(_item_floor(field["type"]) for field in schema.get("fields", []))
    if kind == "array":
        return _least((_min_size(schema["items"]), _item_floor(schema["items"])))
    if kind == "map":
        return _least((1 + _min_size(schema["values"]), _item_floor(schema["values"])))
    if kind in ("fixed", "enum"):
        return None
    return _item_floor(kind)


def _least(floors: Iterable[int | None]) -> int | None:
    return min((f for f in floors if f is not None), default=None)


# --- counting items on the wire ---------------------------------------------------------------

class _Budget:
    __slots__ = ("left", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit

    def take(self, count: int) -> None:
        self.left -= count
        if self.left < 0:
            raise TooManyItems(f"more than max_items ({self.limit}) array items and map entries: "
                               f"at least {self.limit - self.left}")


Step = Callable[[bytes, int, _Budget], int]  # reads one value at a position, returns where it ends


@dataclass(frozen=True)
class ItemWalk:
    step: Step  # counts the array items and map entries of a body while walking it
    floor: int  # the fewest bytes one of them takes (_item_floor)


def item_walker(schema: Any) -> ItemWalk | None:
    """The walk that counts the array items and map entries of a body of this (fastavro-parsed) record
    schema; None if the schema has no array or map (nothing to count)."""
    floor = _item_floor(schema)
    if floor is None:
        return None
    named = schema.get("__named_schemas", {}) if isinstance(schema, dict) else {}
    return ItemWalk(_Compiler(named).step(schema), floor)


def items_refusal(walk: ItemWalk | None, body: bytes, start: int, max_items: int) -> tuple[Reason, str] | None:
    """Why the record at `body[start:]` must not be decoded, or None. Cheap for a body too short to
    hold more than `max_items` items (it is not walked)."""
    if walk is None or len(body) - start <= max_items * walk.floor:
        return None
    try:
        walk.step(body, start, _Budget(max_items))
    except TooManyItems as exc:
        return Reason.TOO_MANY_ITEMS, str(exc)
    except (Malformed, IndexError, RecursionError) as exc:
        detail = str(exc) if isinstance(exc, Malformed) else "a value reads past the end of the body"
        return Reason.UNDECODABLE_AVRO, detail
    return None


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Avro's zig-zag varint at `pos` (at most 10 bytes), and where it ends."""
    raw, shift = 0, 0
    for _ in range(10):
        byte = buf[pos]
        pos += 1
        raw |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (raw >> 1) ^ -(raw & 1), pos
        shift += 7
    raise Malformed("a varint longer than 10 bytes")


def _skip(buf: bytes, pos: int, size: int) -> int:
    if size < 0 or size > len(buf) - pos:
        raise Malformed("a value reads past the end of the body")
    return pos + size


def _fixed_size(schema: Any) -> int | None:
    """The size of a type every value of which takes the same bytes, else None."""
    if isinstance(schema, str):
        return _SIZES.get(schema)
    if isinstance(schema, dict):
        if schema.get("type") == "fixed":
            return int(schema["size"])
        if isinstance(schema.get("type"), str) and schema["type"] != "record":
            return _SIZES.get(schema["type"])
    return None


class _Compiler:
    """Turns a schema into nested closures once, so a walk costs a call per value, not a schema lookup."""

    def __init__(self, named: dict[str, Any]) -> None:
        self._named = named
        self._by_name: dict[str, Step] = {}

    def step(self, schema: Any) -> Step:
        if isinstance(schema, str):
            return self._primitive(schema)
        if isinstance(schema, list):
            return self._union([self.step(b) for b in schema])
        kind = schema.get("type")
        if kind == "record":
            return self._record([self.step(f["type"]) for f in schema.get("fields", [])])
        if kind == "array":
            return self._blocks([self.step(schema["items"])], _fixed_size(schema["items"]))
        if kind == "map":
            return self._blocks([_length_prefixed, self.step(schema["values"])], None)
        if kind == "fixed":
            size = int(schema["size"])
            return lambda buf, pos, budget: _skip(buf, pos, size)
        if kind == "enum":
            return _varint_step
        return self.step(kind)  # {"type": "long", "logicalType": ...} and the like

    def _primitive(self, name: str) -> Step:
        if name in _SIZES:
            size = _SIZES[name]
            return lambda buf, pos, budget: _skip(buf, pos, size)
        if name in _VARINTS:
            return _varint_step
        if name in _LENGTH_PREFIXED:
            return _length_prefixed
        if name not in self._named:
            return _unknown_type
        # A named type, compiled when first met on the wire (it may refer to itself).
        def named(buf: bytes, pos: int, budget: _Budget) -> int:
            if name not in self._by_name:
                self._by_name[name] = self.step(self._named[name])
            return self._by_name[name](buf, pos, budget)
        return named

    @staticmethod
    def _union(branches: list[Step]) -> Step:
        def union(buf: bytes, pos: int, budget: _Budget) -> int:
            index, pos = _varint(buf, pos)
            if not 0 <= index < len(branches):
                raise Malformed(f"union branch {index} of {len(branches)}")
            return branches[index](buf, pos, budget)
        return union

    @staticmethod
    def _record(fields: list[Step]) -> Step:
        def record(buf: bytes, pos: int, budget: _Budget) -> int:
            for field in fields:
                pos = field(buf, pos, budget)
            return pos
        return record

    @staticmethod
    def _blocks(parts: list[Step], item_size: int | None) -> Step:
        """An array (parts: the item) or a map (parts: key, value), block by block; a block's count is
        checked against the bytes left and taken from the budget before its items are walked."""
        def blocks(buf: bytes, pos: int, budget: _Budget) -> int:
            while True:
                count, pos = _varint(buf, pos)
                if count == 0:
                    return pos
                if count < 0:  # a block with its size in bytes after the count
                    count = -count
                    _, pos = _varint(buf, pos)
                if count > len(buf) - pos:  # every item takes a byte (avro.py refuses the others)
                    raise Malformed(f"a block of {count} items in {len(buf) - pos} bytes")
                budget.take(count)
                if item_size is not None:
                    pos = _skip(buf, pos, count * item_size)
                    continue
                for _ in range(count):
                    for part in parts:
                        pos = part(buf, pos, budget)
        return blocks


def _varint_step(buf: bytes, pos: int, budget: _Budget) -> int:
    if buf[pos] < 0x80:  # the common case: one byte
        return pos + 1
    return _varint(buf, pos)[1]


def _length_prefixed(buf: bytes, pos: int, budget: _Budget) -> int:
    byte = buf[pos]
    if byte < 0x80:
        size, pos = (byte >> 1) ^ -(byte & 1), pos + 1
    else:
        size, pos = _varint(buf, pos)
    if size < 0 or size > len(buf) - pos:
        raise Malformed("a length reads past the end of the body")
    return pos + size


def _unknown_type(buf: bytes, pos: int, budget: _Budget) -> int:
    raise Malformed("a type the walk does not know")
