"""Partition expressions as config writes them, e.g. `day(_kafka_timestamp)`, `bucket(16, user_id)`. Pure.

Parsed here, below both the config (which checks them) and the catalog (which builds specs from them)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNARY = ("identity", "year", "month", "day", "hour")
_WITH_WIDTH = ("bucket", "truncate")
_CALL = re.compile(r"^\s*(\w+)\s*\(\s*(?:(\d+)\s*,\s*)?([\w.]+)\s*\)\s*$")
_BARE = re.compile(r"^\s*([\w.]+)\s*$")


@dataclass(frozen=True)
class PartitionTerm:
    transform: str
    column: str
    width: int | None = None

    @property
    def field_name(self) -> str:
        column = self.column.replace(".", "_")
        if self.transform == "identity":
            return column
        if self.width is not None:
            return f"{column}_{self.transform}_{self.width}"
        return f"{column}_{self.transform}"


def parse_term(text: str) -> PartitionTerm:
    """Parse one expression; raises ValueError with the reason."""
    bare = _BARE.match(text)
    if bare:
        return PartitionTerm("identity", bare.group(1))
    call = _CALL.match(text)
    if not call:
        raise ValueError(f"not a partition expression: {text!r} (e.g. 'day(ts)', 'bucket(16, id)', 'region')")
    name, width, column = call.group(1).lower(), call.group(2), call.group(3)
    if name in _UNARY:
        if width is not None:
            raise ValueError(f"{name}() takes only a column: {text!r}")
        return PartitionTerm(name, column)
    if name in _WITH_WIDTH:
        if width is None:
            raise ValueError(f"{name}() needs a width first: {name}(N, column)")
        return PartitionTerm(name, column, int(width))
    raise ValueError(f"unknown partition transform {name!r} in {text!r}")
