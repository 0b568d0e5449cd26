"""Checks a JSON value must pass before any parser sees it, and the field names a column may have. Pure.

Nesting: Python's json recursion gives RecursionError on ~4 KB of brackets and pyarrow's parser
overflows its stack (the process dies of SIGSEGV) on ~40 KB, so a value's depth is measured by a
linear scan of its bytes (brackets outside strings) first. Integers: a JSON integer outside the
64-bit range fits no integer, float or new column as it is (pyarrow would infer it as a double,
altering it, and `Table.from_pylist` raises OverflowError); a decimal column's own precision decides.
Names: a field name becomes a column name, and some names break the table for good (pyiceberg cannot
write a column named "") or the terminals and engines that show them. Dots and slashes are fine in a
name (`host.name`, `app.kubernetes.io/name`): pyiceberg writes and reads them, and escapes them in
partition paths. What breaks is two fields with one full name: pyiceberg joins a field's path with
dots (a list's items are `element`, a map's `key` and `value`) and refuses a schema where two paths
join alike ("multiple fields for name a.b" for a column `a.b` beside struct `a` with field `b`), so a
name colliding with another path, the table's or the record's own, is refused, and so are the names
that make such paths ambiguous (`a..b`, a dot at either end).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa

from tabletopic.core import metadata

# Deep enough for any real document (a few levels per nested entity), low enough that every
# recursive walk of a value or its type (json, Arrow conversion, schema planning, several Python
# frames per level) stays far below Python's recursion limit of 1000 frames.
MAX_DEPTH = 64

# The longest field name taken: 255 characters, what AWS Glue takes for a column name.
MAX_NAME_CHARS = 255

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1

_OPEN, _CLOSE, _QUOTE, _BACKSLASH = (ord(c) for c in "[]\"\\")
_OPEN_BRACE, _CLOSE_BRACE = ord("{"), ord("}")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_NOT_BRACKETS_NOR_NEWLINE = bytes(b for b in range(256) if b not in b"[]{}\n")
_AS_SQUARE = bytes.maketrans(b"{}", b"[]")
_NEWLINE = ord("\n")
_STEP = np.zeros(256, dtype=np.int32)
_STEP[_OPEN], _STEP[_CLOSE] = 1, -1
# Any integer outside the 64-bit range has at least 19 digits in a row.
_LONG_DIGITS = re.compile(rb"\d{19}")
_DIGITS_AS_ZERO = bytes.maketrans(b"0123456789", b"0" * 10)
_NINETEEN_DIGITS = b"0" * 19
# Control characters (C0, DEL, C1), format characters (bidi overrides, zero-width), surrogates,
# unassigned code points and line/paragraph separators: invisible, or rewriting what a terminal shows.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Cn", "Co", "Zl", "Zp"})
# The format characters that are part of how words are spelled: ZERO WIDTH NON-JOINER and JOINER (Persian,
# Indic scripts, emoji sequences). Every other one (bidi overrides and isolates, zero-width space) is refused.
_JOINERS = frozenset("\u200c\u200d")
# Columns of every table (unless switched off) that a new field's full name may not collide with either.
_METADATA_COLUMNS = pa.struct(metadata.FIELDS)


def nesting_depth(value: bytes) -> int:
    """How deep `value`'s arrays and objects nest, counting brackets outside strings: exact above
    MAX_DEPTH, a bound no higher than MAX_DEPTH below it. Linear in the value's size; for a malformed
    value never below what a parser would descend before failing."""
    openers = value.count(b"{") + value.count(b"[")
    if openers <= MAX_DEPTH:
        return openers  # a bound: no deeper than its opening brackets, and exact enough below the limit
    if _brackets_within_limit(value.translate(_AS_SQUARE, _NOT_BRACKETS)):
        return MAX_DEPTH
    data = np.frombuffer(value, dtype=np.uint8)
    quote = data == _QUOTE
    backslash = data == _BACKSLASH
    if backslash.any():
        # A quote is escaped when an odd run of backslashes ends right before it.
        index = np.arange(data.size, dtype=np.int64)
        last_plain = np.maximum.accumulate(np.where(backslash, -1, index))
        run = index - last_plain  # backslashes in a row ending at each byte
        quote[1:] &= (run[:-1] & 1) == 0
    inside = (np.cumsum(quote, dtype=np.int64) & 1).astype(bool)
    step = ((data == _OPEN) | (data == _OPEN_BRACE)).astype(np.int64)
    step -= (data == _CLOSE) | (data == _CLOSE_BRACE)
    step[inside] = 0
    level = np.cumsum(step)
    # The largest rise over any stretch: stray closing brackets before an opening run do not hide it.
    return int((level - np.minimum(np.minimum.accumulate(level), 0)).max(initial=0))


def _brackets_within_limit(brackets: bytes) -> bool:
    """True when `brackets` (only `[` and `]`) nest no deeper than MAX_DEPTH: each pass deletes the
    innermost pairs, so a balanced depth d empties in d passes. Brackets inside strings count too: a
    bound from above."""
    for _ in range(MAX_DEPTH):
        inner_removed = brackets.replace(b"[]", b"")
        if not inner_removed:
            return True
        if len(inner_removed) == len(brackets):
            return False  # unbalanced (or a value's own newlines in the way): the exact scan decides
        brackets = inner_removed
    return False


def too_deep(values: Sequence[bytes | None]) -> list[int]:
    """The indices of the values nested deeper than MAX_DEPTH. A batch of shallow values costs a few
    passes over its brackets, in C; only a batch that fails them is scanned value by value."""
    brackets = b"\n".join([v for v in values if v]).translate(_AS_SQUARE, _NOT_BRACKETS_NOR_NEWLINE)
    codes = np.frombuffer(brackets, dtype=np.uint8)
    level = np.cumsum(_STEP[codes])
    # Every value balanced (level 0 at each newline and at the end, never below) and no level too high.
    if not level.size or (level[-1] == 0 and level.max() <= MAX_DEPTH and level.min() >= 0
                          and not level[codes == _NEWLINE].any()):
        return []
    return [i for i, v in enumerate(values) if v is not None and nesting_depth(v) > MAX_DEPTH]


def is_too_deep(value: bytes | None) -> bool:
    return value is not None and nesting_depth(value) > MAX_DEPTH


def too_deep_message(value: bytes) -> str:
    return f"JSON nested {nesting_depth(value)} levels deep, over the limit of {MAX_DEPTH}"


class IntegerOutOfRange(ValueError):
    def __init__(self, literal: str) -> None:
        shown = literal if len(literal) <= 40 else f"{literal[:40]}… ({len(literal)} digits)"
        super().__init__(f"integer {shown} is outside the 64-bit range [{INT64_MIN}, {INT64_MAX}]")


@dataclass(frozen=True)
class _LongLiteral:
    """An integer literal of more than 19 digits, kept as text: int() of a very long literal is slow, and
    refused past 4300 digits."""

    text: str


def _parsed_int(literal: str) -> int | _LongLiteral:
    return _LongLiteral(literal) if len(literal.lstrip("-")) > 19 else int(literal)


def may_hold_long_integer(values: Sequence[bytes | None]) -> bool:
    """False when no value has 19 digits in a row (one regex pass over the batch)."""
    # translate and `in` run at memory speed, several times faster than a regex search
    return _NINETEEN_DIGITS in b"\n".join(v for v in values if v).translate(_DIGITS_AS_ZERO)


def integer_out_of_range(value: bytes, known: pa.DataType | None = None) -> str | None:
    """The message for a value holding an integer outside the 64-bit range where no decimal column of
    `known` (the table's struct type) takes it; None if it has none (or does not parse: the decoder names
    that). `value` must not be too deep."""
    if _LONG_DIGITS.search(value) is None:
        return None
    try:
        parsed = json.loads(value, parse_int=_parsed_int)
    except (ValueError, UnicodeDecodeError):
        return None
    literal = _outside_int64(parsed, known)
    return None if literal is None else str(IntegerOutOfRange(literal))


def _outside_int64(value: Any, known: pa.DataType | None) -> str | None:
    """The first integer literal in `value` outside the 64-bit range and not headed for a decimal column."""
    if known is not None and pa.types.is_decimal(known):
        return None  # the column's precision decides, and the parser names a value past it
    if isinstance(value, _LongLiteral):
        return value.text
    if type(value) is int:
        return None if INT64_MIN <= value <= INT64_MAX else str(value)
    if isinstance(value, list):
        item = known.value_type if known is not None and _is_list(known) else None
        return next((found for each in value if (found := _outside_int64(each, item)) is not None), None)
    if isinstance(value, dict):
        if known is not None and pa.types.is_map(known):
            return next((found for each in value.values()
                         if (found := _outside_int64(each, known.item_type)) is not None), None)
        fields = _fields(known)
        return next((found for name, each in value.items()
                     if (found := _outside_int64(each, fields.get(name))) is not None), None)
    return None


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a column name; None when it can. Taken: any other Unicode text, spaces,
    hyphens and punctuation included (Spark and Trino read them as quoted identifiers)."""
    if not name:
        return "empty field name"
    if len(name) > MAX_NAME_CHARS:
        return f"field name of {len(name)} characters (over {MAX_NAME_CHARS})"
    if ".." in name or name[0] == "." or name[-1] == ".":
        return f"field name {name[:80]!r} has an empty part between dots (a path that reads two ways)"
    for char in name:
        if char not in _JOINERS and unicodedata.category(char) in _REFUSED_CATEGORIES:
            return f"field name {name[:80]!r} contains the control or invisible character U+{ord(char):04X}"
    return None


class _DuplicateField(ValueError):
    pass


def _pairs_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise _DuplicateField(f"field {twice!r} appears twice in one object")
    return obj


def value_name_problem(value: bytes | None, known: pa.DataType | None = None) -> str | None:
    """Why a JSON value's field names cannot become columns: the first bad name at any depth, a name
    twice in one object, or a new field whose full name another field (the table's or the value's own)
    has; None if every name is fine or the value does not parse. Names `known` (the table's struct type)
    already has are taken as they are, and keys of its map columns are data. `value` must not be too deep."""
    if value is None:
        return None
    try:
        parsed = json.loads(value, object_pairs_hook=_pairs_without_duplicates)
    except _DuplicateField as exc:
        return str(exc)
    except (ValueError, UnicodeDecodeError):
        return None
    taken = dict(_full_names(known))
    for path, shown, data_type in _names(parsed, known, (), ""):
        if data_type is None:
            problem = name_problem(path[-1]) or _collision(path, taken)
            if problem is not None:
                return f"{problem} (in {shown})" if shown else problem
            taken.setdefault(".".join(path), path)
    return None


def _names(value: Any, known: pa.DataType | None, path: tuple[str, ...],
           shown: str) -> Iterator[tuple[tuple[str, ...], str, pa.DataType | None]]:
    """Each field in `value` (a list's items as the field `element`, as Iceberg names them) with its path,
    where it is shown and its known type (None: a field the table does not have)."""
    if isinstance(value, list):
        item = known.value_type if known is not None and _is_list(known) else None
        element = (*path, "element")
        if any(each is not None for each in value):
            yield element, shown, item
        for each in value:
            yield from _names(each, item, element, f"{shown}[]")
    elif isinstance(value, dict):
        if known is not None and pa.types.is_map(known):
            for each in value.values():
                yield from _names(each, known.item_type, (*path, "value"), f"{shown}{{}}")
            return
        fields = _fields(known)
        for name, each in value.items():
            child = fields.get(name)
            field_path = (*path, name)
            yield field_path, shown, child
            display = name if name_problem(name) is None else "?"
            yield from _names(each, child, field_path, f"{shown}.{display}" if shown else display)


def _collision(path: tuple[str, ...], taken: dict[str, tuple[str, ...]]) -> str | None:
    """Why the field at `path` cannot be added beside the fields `taken` (by full name): another field
    has its full name. pyiceberg refuses such a schema ("multiple fields for name ...")."""
    full_name = ".".join(path)
    other = taken.get(full_name)
    if other is None or other == path:
        return None
    return (f"field {json.dumps(list(path))} collides with field {json.dumps(list(other))}: "
            f"both have the full name {full_name[:200]!r}")


@lru_cache(maxsize=64)
def _full_names(known: pa.DataType | None) -> dict[str, tuple[str, ...]]:
    """The path of each field of `known` and of the metadata columns, by full name (its parts joined
    with dots). Cached: a decoder asks for one table's type again and again; callers copy it."""
    names: dict[str, tuple[str, ...]] = {}
    for data_type in (_METADATA_COLUMNS, known):
        for path in _type_paths(data_type, ()):
            names.setdefault(".".join(path), path)
    return names


def _type_paths(data_type: pa.DataType | None, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    if data_type is None:
        return
    if pa.types.is_struct(data_type):
        children = [(f.name, f.type) for f in (data_type.field(i) for i in range(data_type.num_fields))]
    elif _is_list(data_type):
        children = [("element", data_type.value_type)]
    elif pa.types.is_map(data_type):
        children = [("key", data_type.key_type), ("value", data_type.item_type)]
    else:
        return
    for name, child in children:
        yield (*path, name)
        yield from _type_paths(child, (*path, name))


def schema_name_problems(schema: pa.Schema, known: pa.Schema | None = None) -> list[str]:
    """The problems of the names in `schema` (an inferred one) that `known` does not have."""
    problems: list[str] = []
    _prune_struct(schema, known, problems)
    return problems


def without_bad_names(schema: pa.Schema, known: pa.Schema | None = None) -> pa.Schema:
    """`schema` less every field whose name cannot be a column (and that `known` does not have), and
    every new field whose full name `known` or an earlier field of `schema` already has."""
    return _prune_struct(schema, known, [])


def _prune_struct(schema: pa.Schema, known: pa.Schema | None, problems: list[str]) -> pa.Schema:
    known_type = _struct_of(known)
    pruned = _prune(pa.struct(list(schema)), known_type, (), dict(_full_names(known_type)), problems)
    return pa.schema([pruned.field(i) for i in range(pruned.num_fields)])


def _prune(data_type: pa.DataType, known: pa.DataType | None, path: tuple[str, ...],
           taken: dict[str, tuple[str, ...]], problems: list[str]) -> pa.DataType:
    if known is not None and pa.types.is_map(known):
        return data_type  # keys of a map column are data, not names
    if pa.types.is_struct(data_type):
        fields = _fields(known)
        kept = []
        for field in (data_type.field(i) for i in range(data_type.num_fields)):
            child = fields.get(field.name)
            field_path = (*path, field.name)
            if child is None:
                own = [field_path, *_element_paths(field.type, field_path)]
                problem = name_problem(field.name) or next(
                    (found for each in own if (found := _collision(each, taken)) is not None), None)
                if problem is not None:
                    problems.append(problem)
                    continue
                taken.update((".".join(each), each) for each in own)
            kept.append(field.with_type(_prune(field.type, child, field_path, taken, problems)))
        return pa.struct(kept)
    if _is_list(data_type):
        item = known.value_type if known is not None and _is_list(known) else None
        element = (*path, "element")
        return pa.list_(data_type.value_field.with_type(_prune(data_type.value_type, item, element, taken, problems)))
    return data_type


def _element_paths(data_type: pa.DataType, path: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The paths of a new list's items (and of theirs, for a list of lists)."""
    paths = []
    while _is_list(data_type):
        path = (*path, "element")
        paths.append(path)
        data_type = data_type.value_type
    return paths


def _struct_of(schema: pa.Schema | None) -> pa.DataType | None:
    return None if schema is None else pa.struct(list(schema))


def _fields(data_type: pa.DataType | None) -> dict[str, pa.DataType]:
    if data_type is None or not pa.types.is_struct(data_type):
        return {}
    return {data_type.field(i).name: data_type.field(i).type for i in range(data_type.num_fields)}


def _is_list(data_type: pa.DataType) -> bool:
    return pa.types.is_list(data_type) or pa.types.is_large_list(data_type)
