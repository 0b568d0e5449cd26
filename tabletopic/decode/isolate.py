"""Find the records a batch failed on, by bisection, and keep the rest. Pure: the caller decodes.

A batch whose decoding (or schema change, or table creation) raised is split in halves, and each
half tried again; a half that still raises is split again, down to single records, each of which
is then a culprit. Past `PER_RECORD_BELOW` records a failing range is tried a record at a time,
so a batch whose every record fails costs about n·log2(n / PER_RECORD_BELOW) + n record decodes
in at most log2(n) levels of recursion, and one bad record among n costs about 2·log2(n) tries.

Faults of the services a batch needs (the catalog, the object store, the registry) are not the
records' doing: they are raised as they are, never turned into dead letters. Every catalog call of
the ingest raises CatalogCallFailed whatever went wrong in it, so that a glitch surfacing as an
unusual exception type is still a service's fault.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
from pyiceberg import exceptions as iceberg

from tabletopic.catalog.calls import CatalogCallFailed
from tabletopic.catalog.projection import Cutover
from tabletopic.commit import faults
from tabletopic.decode.base import BadValue
from tabletopic.exceptions import CommitError, ConfigError, OffsetsError, RecordError, SourceUnavailable

PER_RECORD_BELOW = 8


@dataclass
class Part:
    """What a range of a batch gave: rows for the good records, the bad ones; indices are the batch's."""

    rows: pa.Table
    good: list[int] = field(default_factory=list)
    bad: list[BadValue] = field(default_factory=list)  # what the decoder itself found wrong
    dropped_fields: int = 0


@dataclass
class Isolated:
    parts: list[Part]  # in the batch's order
    culprits: list[tuple[int, Exception]]  # (index in the batch, what it raised), ascending


def isolate(count: int, attempt: Callable[[int, int], Part]) -> Isolated:
    """`attempt(lo, hi)` for the whole batch, or for as many ranges as it takes to set apart every
    record on which it raises. Raises what `attempt` raised if it is a fault of a service."""
    parts: list[Part] = []
    culprits: list[tuple[int, Exception]] = []

    def visit(lo: int, hi: int) -> None:
        try:
            parts.append(attempt(lo, hi))
            return
        except Exception as exc:
            if is_infrastructure(exc):
                raise
            if hi - lo == 1:
                culprits.append((lo, exc))
                return
        if hi - lo <= PER_RECORD_BELOW:
            for index in range(lo, hi):
                visit(index, index + 1)
            return
        mid = (lo + hi) // 2
        visit(lo, mid)
        visit(mid, hi)

    if count:
        visit(0, count)
    return Isolated(parts, culprits)


_SERVICE_ERRORS: tuple[type[BaseException], ...] = (
    CommitError, SourceUnavailable, OffsetsError, ConfigError, RecordError,  # ours, raised on purpose
    CatalogCallFailed,  # whatever a catalog call raised, told by where it failed (catalog/calls.py)
    Cutover,  # a rebuild's cutover holding the table (catalog/projection.py): never the record's fault
    iceberg.RESTError, iceberg.CommitStateUnknownException, iceberg.NoSuchTableError, iceberg.NoSuchNamespaceError,
    *faults._types("sqlalchemy.exc", "SQLAlchemyError"),
)


def is_infrastructure(exc: BaseException) -> bool:
    """Whether `exc` comes from a service (catalog unreachable, refused credentials, a registry
    outage) or from tabletopic's own checks, rather than from a record's content."""
    if isinstance(exc, _SERVICE_ERRORS):
        return True
    return faults.permanent(exc) is not None or faults.is_transient(exc)


def describe(exc: BaseException, limit: int = 300) -> str:
    """The exception's class and its message, cut to `limit` characters."""
    text = str(exc)
    if len(text) > limit:
        text = text[:limit] + f"... ({len(text)} characters)"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
