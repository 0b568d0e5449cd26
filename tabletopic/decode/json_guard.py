"""Checks a JSON value must pass before any parser sees it, and the field names a column may have. Pure.

Nesting: Python's json recursion gives RecursionError on ~4 KB of brackets and pyarrow's parser
overflows its stack (the process dies of SIGSEGV) on ~40 KB, so a value's depth is measured by a
linear scan of its bytes (brackets outside strings) first. Integers: a JSON integer outside the
64-bit range fits no column as it is (pyarrow would infer it as a double, altering it, and
`Table.from_pylist` raises OverflowError). Names: a field name becomes a column name, and some
names break the table for good (pyiceberg cannot write a column named "", `a.b` collides with
field `b` of struct `a`) or the terminals and engines that show them.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

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
_REFUSED_CHARS = frozenset("./")


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


def _checked_int(literal: str) -> int:
    if len(literal.lstrip("-")) > 19:  # int() of a very long literal is slow, and refused past 4300 digits
        raise IntegerOutOfRange(literal)
    number = int(literal)
    if not INT64_MIN <= number <= INT64_MAX:
        raise IntegerOutOfRange(literal)
    return number


def may_hold_long_integer(values: Sequence[bytes | None]) -> bool:
    """False when no value has 19 digits in a row (one regex pass over the batch)."""
    # translate and `in` run at memory speed, several times faster than a regex search
    return _NINETEEN_DIGITS in b"\n".join(v for v in values if v).translate(_DIGITS_AS_ZERO)


def integer_out_of_range(value: bytes) -> str | None:
    """The message for a value holding an integer outside the 64-bit range; None if it has none
    (or does not parse: the decoder names that). `value` must not be too deep."""
    if _LONG_DIGITS.search(value) is None:
        return None
    try:
        json.loads(value, parse_int=_checked_int)
    except IntegerOutOfRange as exc:
        return str(exc)
    except (ValueError, UnicodeDecodeError):
        return None
    return None


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a column name; None when it can. Taken: any other Unicode text, spaces,
    hyphens and punctuation included (Spark and Trino read them as quoted identifiers)."""
    if not name:
        return "empty field name"
    if len(name) > MAX_NAME_CHARS:
        return f"field name of {len(name)} characters (over {MAX_NAME_CHARS})"
    for char in name:
        if char in _REFUSED_CHARS:
            return f"field name {name[:80]!r} contains {char!r} (a path separator in column references)"
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
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
    """Why a JSON value's field names cannot become columns: the first bad name at any depth, or a
    name twice in one object; None if every name is fine or the value does not parse. Names `known`
    (the table's struct type) already has are taken as they are, and keys of its map columns are data.
    `value` must not be too deep."""
    if value is None:
        return None
    try:
        parsed = json.loads(value, object_pairs_hook=_pairs_without_duplicates)
    except _DuplicateField as exc:
        return str(exc)
    except (ValueError, UnicodeDecodeError):
        return None
    for path, name, data_type in _names(parsed, known, ""):
        if data_type is None:
            problem = name_problem(name)
            if problem is not None:
                return f"{problem} (in {path})" if path else problem
    return None


def _names(value: Any, known: pa.DataType | None, path: str) -> Iterator[tuple[str, str, pa.DataType | None]]:
    """Each field name in `value` with where it is and its known type (None: a name the table does not have)."""
    if isinstance(value, list):
        item = known.value_type if known is not None and _is_list(known) else None
        for each in value:
            yield from _names(each, item, f"{path}[]")
    elif isinstance(value, dict):
        if known is not None and pa.types.is_map(known):
            for each in value.values():
                yield from _names(each, known.item_type, f"{path}{{}}")
            return
        fields = _fields(known)
        for name, each in value.items():
            child = fields.get(name)
            yield path, name, child
            shown = name if name_problem(name) is None else "?"
            yield from _names(each, child, f"{path}.{shown}" if path else shown)


def schema_name_problems(schema: pa.Schema, known: pa.Schema | None = None) -> list[str]:
    """The problems of the names in `schema` (an inferred one) that `known` does not have."""
    return [problem for name, data_type in _type_names(pa.struct(list(schema)), _struct_of(known))
            if data_type is None and (problem := name_problem(name)) is not None]


def without_bad_names(schema: pa.Schema, known: pa.Schema | None = None) -> pa.Schema:
    """`schema` less every field whose name cannot be a column (and that `known` does not have)."""
    pruned = _prune(pa.struct(list(schema)), _struct_of(known))
    return pa.schema([pruned.field(i) for i in range(pruned.num_fields)])


def _prune(data_type: pa.DataType, known: pa.DataType | None) -> pa.DataType:
    if known is not None and pa.types.is_map(known):
        return data_type  # keys of a map column are data, not names
    if pa.types.is_struct(data_type):
        fields = _fields(known)
        kept = [f.with_type(_prune(f.type, fields.get(f.name)))
                for f in (data_type.field(i) for i in range(data_type.num_fields))
                if f.name in fields or name_problem(f.name) is None]
        return pa.struct(kept)
    if _is_list(data_type):
        item = known.value_type if known is not None and _is_list(known) else None
        return pa.list_(data_type.value_field.with_type(_prune(data_type.value_type, item)))
    return data_type


def _type_names(data_type: pa.DataType, known: pa.DataType | None) -> Iterator[tuple[str, pa.DataType | None]]:
    if known is not None and pa.types.is_map(known):
        return  # keys of a map column are data, not names
    if pa.types.is_struct(data_type):
        fields = _fields(known)
        for field in (data_type.field(i) for i in range(data_type.num_fields)):
            child = fields.get(field.name)
            yield field.name, child
            yield from _type_names(field.type, child)
    elif _is_list(data_type):
        yield from _type_names(data_type.value_type, known.value_type if known is not None and _is_list(known)
                               else None)


def _struct_of(schema: pa.Schema | None) -> pa.DataType | None:
    return None if schema is None else pa.struct(list(schema))


def _fields(data_type: pa.DataType | None) -> dict[str, pa.DataType]:
    if data_type is None or not pa.types.is_struct(data_type):
        return {}
    return {data_type.field(i).name: data_type.field(i).type for i in range(data_type.num_fields)}


def _is_list(data_type: pa.DataType) -> bool:
    return pa.types.is_list(data_type) or pa.types.is_large_list(data_type)
