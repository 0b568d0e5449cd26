"""What every decoder shares: the failure it raises and the schema normalisation for new tables."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import pyarrow as pa

from tabletopic.kafka.records import RecordChunk


class BadValue(Exception):
    """Value number `index` of a batch cannot be decoded; `reason` says why."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"value {index}: {reason}")
        self.index = index
        self.reason = reason


class Decoder(Protocol):
    def decode(self, chunk: RecordChunk) -> pa.Table:
        """One row per record; raises BadValue for the first record whose value cannot be decoded."""
        ...


def find_bad_value(
    values: Sequence[bytes | None],
    decode: Callable[[Sequence[bytes | None]], pa.Table],
    explain: Callable[[bytes | None, Exception | None], str],
) -> BadValue:
    """Bisect a batch that failed as a whole down to its first bad value (log2(n) decodes)."""
    lo, hi = 0, len(values)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _decodes(values[lo:mid], decode):
            lo = mid
        else:
            hi = mid
    error: Exception | None = None
    try:
        decode(values[lo:hi])
    except Exception as exc:
        error = exc
    return BadValue(lo, explain(values[lo] if values else None, error))


def _decodes(values: Sequence[bytes | None], decode: Callable[[Sequence[bytes | None]], pa.Table]) -> bool:
    try:
        return decode(values).num_rows == len(values)
    except Exception:
        return False
