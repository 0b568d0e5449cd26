"""What every decoder shares: what it hands back, the failures it names, and the search for bad values."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import pyarrow as pa

from tabletopic.catalog.evolution import EvolutionPlan, plan_evolution
from tabletopic.core.reasons import Reason
from tabletopic.core.records import RecordChunk


class BadValue(Exception):
    """Value number `index` of a batch cannot be decoded; `code` and `reason` say why."""

    def __init__(self, index: int, reason: str, code: Reason = Reason.TYPE_MISMATCH,
                 schema_id: int | None = None) -> None:
        super().__init__(f"value {index}: {reason}")
        self.index = index
        self.reason = reason
        self.code = code
        self.schema_id = schema_id

    def at(self, index: int) -> BadValue:
        return BadValue(index, self.reason, self.code, self.schema_id)


class SchemaDrift(Exception):
    """The batch needs the table to evolve first: `incoming` is the value schema to evolve towards."""

    def __init__(self, incoming: pa.Schema, additions_only: bool) -> None:
        super().__init__("the table schema must evolve")
        self.incoming = incoming
        self.additions_only = additions_only


@dataclass
class Decoded:
    rows: pa.Table  # one row per good value, in order
    good: list[int] | None = None  # the good values' indices in the batch; None: every value
    bad: list[BadValue] = field(default_factory=list)
    dropped_fields: int = 0  # values that carried fields the table ignores (JSON drift `ignore`)


class Decoder(Protocol):
    def decode(self, chunk: RecordChunk, allow_drift: bool = True) -> Decoded:
        """Rows for the good values, a BadValue for each bad one; raises SchemaDrift (if allowed)
        when the table should evolve before this batch."""
        ...


def split_bad_values(
    values: Sequence[bytes | None],
    decode: Callable[[Sequence[bytes | None]], pa.Table],
    explain: Callable[[int, bytes | None, Exception | None], BadValue],
    schema: pa.Schema,
) -> Decoded:
    """Decode a batch that failed as a whole: halves that decode are kept, the rest split again
    down to single values, each of which is explained. k bad values cost about n·log2(n/k) work."""
    tables: list[pa.Table] = []
    good: list[int] = []
    bad: list[BadValue] = []

    def visit(lo: int, hi: int) -> None:
        error: Exception | None = None
        try:
            table = decode(values[lo:hi])
            if table.num_rows == hi - lo:
                tables.append(table)
                good.extend(range(lo, hi))
                return
        except Exception as exc:
            error = exc
        if hi - lo == 1:
            bad.append(explain(lo, values[lo], error))
            return
        mid = (lo + hi) // 2
        visit(lo, mid)
        visit(mid, hi)

    if values:
        visit(0, len(values))
    rows = pa.concat_tables(tables) if tables else schema.empty_table()
    return Decoded(rows, good, bad)


# What pa.Table.from_pylist raises for a value its column cannot take.
ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError)


def rows_of(records: list[dict[str, object]], good: list[int], bad: list[BadValue],
            schema: pa.Schema) -> tuple[pa.Table, list[int], list[BadValue]]:
    """The decoded `records` (values number `good` of a batch) as rows of `schema`; one whose values a column
    cannot take joins `bad` as a type mismatch, the others are kept."""
    try:
        return pa.Table.from_pylist(records, schema=schema), good, bad
    except ARROW_ERRORS:
        pass
    kept_records, kept = [], []
    for record, index in zip(records, good, strict=True):
        try:
            pa.Table.from_pylist([record], schema=schema)
        except ARROW_ERRORS as exc:
            bad.append(BadValue(index, f"type mismatch: {exc}", Reason.TYPE_MISMATCH))
            continue
        kept_records.append(record)
        kept.append(index)
    return pa.Table.from_pylist(kept_records, schema=schema), kept, bad


def raise_if_drift(schema: pa.Schema, plans: Iterable[EvolutionPlan]) -> None:
    """SchemaDrift towards the schema that takes every plan's changes at once, if any plan needs one."""
    target, changed = schema, False
    for plan in plans:
        if plan.needs_change:
            merged = plan_evolution(target, plan.target)
            target, changed = merged.target, changed or bool(merged.changes)
    if changed:
        raise SchemaDrift(target, additions_only=False)
