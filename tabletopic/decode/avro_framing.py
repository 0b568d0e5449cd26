"""Where each Avro body of a batch ends, checked for all bodies at once before the native reader sees them.

The native reader (avro_batch.py) reads the bodies back to back in one block and trusts each to end
where the next begins. A body with bytes its schema does not account for (a newer version's record
framed with an older schema id, a stray byte) shifts every later record onto the wrong bytes, or
leaves bytes after the last record, on which the reader spins forever (holding no lock we could
interrupt it by). So every body is first walked by the rules both readers follow — varint lengths,
string and bytes lengths, union branches, array blocks — with numpy, all bodies a field at a time,
and a batch goes native only if each body ends exactly where its schema says.

The walk also refuses the values fastavro (the per-record path) reads differently or not at all: an
int wider than 32 bits, a boolean byte other than 0 or 1, a union branch the schema lacks, a date or
timestamp outside Python's years 1-9999, an array block with a byte count. A refused batch goes the
per-record way, which names its bad records; so the walk may refuse more than it must, never less.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

Longs = npt.NDArray[np.int64]

_VARINT_MAX = 10  # bytes of a 64-bit varint, and of the padding after the last body
_SIZES = {"float": 4, "double": 8}
_MIN_MICROS, _MAX_MICROS = -62_135_596_800_000_000, 253_402_300_799_999_999  # 0001-01-01 .. 9999-12-31
# (lowest, highest, a varint of up to this many bytes is surely in range: 7 bits a byte, one the sign's)
_RANGES = {
    "timestamp-micros": (_MIN_MICROS, _MAX_MICROS, 8),
    "timestamp-millis": (_MIN_MICROS // 1000, _MAX_MICROS // 1000, 6),
    "date": (-719_162, 2_932_896, 2),  # days from 1970-01-01
}
_INT32 = (-(2**31), 2**31 - 1, 4)


class Unframed(ValueError):
    """A body does not end where its schema says, holds a value the walk refuses, or costs too much to walk."""


def check_framing(schema: Any, bodies: Sequence[bytes]) -> None:
    """Raises Unframed unless every body is exactly one record of `schema` (fastavro-parsed) that
    both readers read alike. The walk costs a few numpy calls per schema node and array item round;
    past a budget that grows with the batch, it gives up (the per-record path is cheaper then)."""
    check_block(schema, b"".join(bodies), np.fromiter(map(len, bodies), dtype=np.int64, count=len(bodies)))


def check_block(schema: Any, block: bytes, lengths: Longs) -> None:
    """check_framing of bodies laid end to end in `block`, `lengths` their sizes."""
    end = np.cumsum(lengths)
    walk = _Walk(block + bytes(_VARINT_MAX), budget=8 * _nodes(schema) + 2 * len(lengths))
    at = walk.value(schema, end - lengths, end)
    if not np.array_equal(at, end):
        short = int(np.flatnonzero(at != end)[0])
        raise Unframed(f"body {short}: {int(end[short] - at[short])} bytes after the record")


def _nodes(schema: Any) -> int:
    if isinstance(schema, list):
        return 1 + sum(_nodes(branch) for branch in schema)
    if isinstance(schema, dict):
        if schema.get("type") == "record":
            return 1 + sum(_nodes(field["type"]) for field in schema["fields"])
        if schema.get("type") == "array":
            return 1 + _nodes(schema["items"])
    return 1


class _Walk:
    """Reads a schema node at each of some bodies' positions (`at`, their ends `end`); returns where each
    such value ends. Every read is checked against its body's end, so no body is read into the next."""

    def __init__(self, padded: bytes, budget: int) -> None:
        self.buf = np.frombuffer(padded, dtype=np.uint8)  # reads past the last body land in the padding
        self.windows = np.lib.stride_tricks.sliding_window_view(self.buf, _VARINT_MAX)  # a varint's bytes
        self.budget = budget

    def value(self, schema: Any, at: Longs, end: Longs) -> Longs:
        if at.size == 0:
            return at
        self.budget -= 1
        if self.budget < 0:
            raise Unframed("the batch's arrays are too long to walk; the per-record path is cheaper")
        if isinstance(schema, str):
            return self.primitive(schema, at, end)
        if isinstance(schema, list):
            return self.union(schema, at, end)
        if schema.get("logicalType") in _RANGES:
            low, high, surely = _RANGES[schema["logicalType"]]
            values, at = self.long(at, end, surely)
            if ((values < low) | (values > high)).any():
                raise Unframed(f"a {schema['logicalType']} outside years 1-9999")
            return at
        if schema["type"] == "record":
            for field in schema["fields"]:
                at = self.value(field["type"], at, end)
            return at
        if schema["type"] == "array":
            return self.array(schema["items"], at, end)
        return self.value(schema["type"], at, end)

    def primitive(self, name: str, at: Longs, end: Longs) -> Longs:
        if name == "null":
            return at
        if name == "boolean":
            if (self.buf[at] > 1).any():
                raise Unframed("a boolean byte other than 0 or 1")
            return _advance(at, 1, end)
        if name in _SIZES:
            return _advance(at, _SIZES[name], end)
        if name in ("long", "int", "string", "bytes"):
            values, at = self.long(at, end, {"long": _VARINT_MAX, "int": _INT32[2]}.get(name, 0))
            if name == "int" and ((values < _INT32[0]) | (values > _INT32[1])).any():
                raise Unframed("an int wider than 32 bits")
            if name in ("string", "bytes"):
                if (values < 0).any():
                    raise Unframed("a negative length")
                return _advance(at, values, end)
            return at
        raise Unframed(f"type {name!r} is not walked")  # batchable() keeps such schemas away

    def union(self, branches: list[Any], at: Longs, end: Longs) -> Longs:
        chosen, at = self.long(at, end)
        if ((chosen < 0) | (chosen >= len(branches))).any():
            raise Unframed("a union branch the schema does not have")
        for index, branch in enumerate(branches):
            if branch == "null":
                continue
            taken = chosen == index
            at[taken] = self.value(branch, at[taken], end[taken])
        return at

    def array(self, items: Any, at: Longs, end: Longs) -> Longs:
        """Each body's array, block by block; `more` are the bodies whose array goes on."""
        at = at.copy()
        more = np.arange(at.size)
        while more.size:
            limit = end[more]
            counts, here = self.long(at[more], limit)
            if (counts < 0).any():
                raise Unframed("an array block with a byte count")
            if (counts > limit - here).any():
                raise Unframed("more array items than bytes")  # each item takes at least one byte
            at[more] = here
            going = counts > 0
            more, counts, here, limit = more[going], counts[going], here[going], limit[going]
            if isinstance(items, str) and items in _SIZES:
                here = _advance(here, counts * _SIZES[items], limit)
            else:
                busy = np.arange(more.size)
                while busy.size:  # item k of every body whose block has more than k items
                    here[busy] = self.value(items, here[busy], limit[busy])
                    counts[busy] -= 1
                    busy = busy[counts[busy] > 0]
            at[more] = here
        return at

    def long(self, at: Longs, end: Longs, known: int = 0) -> tuple[Longs, Longs]:
        """The zig-zag varint at each position and where it ends, read as both readers do (at most 10
        bytes, 64 bits); the values of varints of up to `known` bytes are not worked out (left 0)."""
        first = self.buf[at]
        if (first < 0x80).all():  # the common case: small numbers, short strings, union branches
            return _zigzag(first.astype(np.uint64)), _advance(at, 1, end)
        window = self.windows[at]
        last = window < 0x80
        size = last.argmax(axis=1) + 1
        if not last.any(axis=1).all() or (window[size == _VARINT_MAX, -1] > 1).any():
            raise Unframed("a varint wider than 64 bits")
        after = _advance(at, size, end)
        values = np.zeros(at.size, dtype=np.int64)
        wanted = np.flatnonzero(size > known)
        if wanted.size:
            digits = (window[wanted] & 0x7F).astype(np.uint64) << _SHIFTS
            digits[size[wanted, None] <= _WINDOW] = 0
            values[wanted] = _zigzag(np.bitwise_or.reduce(digits, axis=1))
        return values, after


_WINDOW = np.arange(_VARINT_MAX)
_SHIFTS = (7 * _WINDOW).astype(np.uint64)


def _zigzag(raw: npt.NDArray[np.uint64]) -> Longs:
    return (raw >> np.uint64(1)).astype(np.int64) ^ -(raw & np.uint64(1)).astype(np.int64)


def _advance(at: Longs, count: int | Longs, end: Longs) -> Longs:
    if (count > end - at).any():  # compared before adding: a length may be near 2**63
        raise Unframed("a record reads past the end of its body")
    return at + count
