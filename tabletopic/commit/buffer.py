"""Per-table buffer of decoded rows, kept per topic-partition with the offset range it covers. Pure."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from tabletopic.commit.offsets import OffsetRange, TopicPartition
from tabletopic.exceptions import OffsetsError


@dataclass
class PartitionBuffer:
    """Rows of one topic-partition, in offset order; `rows` may be fewer than the offsets (gaps)."""

    first: int
    last: int
    tables: list[pa.Table] = field(default_factory=list)
    nbytes: int = 0

    @property
    def offsets(self) -> OffsetRange:
        return OffsetRange(self.first, self.last)

    def rows(self) -> pa.Table:
        return pa.concat_tables(self.tables)

    def from_offset(self, next_offset: int, offset_column: str) -> PartitionBuffer:
        """The part at or after `next_offset`, for rows that carry their offset in `offset_column`."""
        rows = self.rows()
        kept = rows.filter(pc.greater_equal(rows[offset_column], next_offset))
        return PartitionBuffer(next_offset, self.last, [kept], kept.nbytes)


@dataclass
class TableBuffer:
    """Everything decoded for one table and not yet committed."""

    opened_at: float | None = None
    partitions: dict[TopicPartition, PartitionBuffer] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.partitions.values())

    @property
    def is_empty(self) -> bool:
        return not self.partitions

    def add(self, tp: TopicPartition, first: int, last: int, rows: pa.Table, now: float) -> None:
        """Buffer rows covering offsets `first..last` (an empty table still moves the range)."""
        held = self.partitions.get(tp)
        if held is None:
            self.partitions[tp] = PartitionBuffer(first, last, [rows], rows.nbytes)
        else:
            if first <= held.last:
                raise OffsetsError(f"{tp[0]}/{tp[1]}: offset {first} after {held.last} does not go up")
            held.last = last
            held.tables.append(rows)
            held.nbytes += rows.nbytes
        if self.opened_at is None:
            self.opened_at = now

    def is_flush_due(self, now: float, interval_s: float, max_bytes: int) -> bool:
        if self.opened_at is None:
            return False
        return now - self.opened_at >= interval_s or self.nbytes >= max_bytes

    def take(self, tps: Iterable[TopicPartition] | None = None) -> dict[TopicPartition, PartitionBuffer]:
        """Remove and return the buffers of `tps` (all when None)."""
        wanted = list(self.partitions) if tps is None else [tp for tp in tps if tp in self.partitions]
        taken = {tp: self.partitions.pop(tp) for tp in wanted}
        if not self.partitions:
            self.opened_at = None
        return taken

    def map_rows(self, change: Callable[[pa.Table], pa.Table]) -> None:
        """Apply `change` to every buffered table (after the table's schema changed)."""
        for held in self.partitions.values():
            held.tables = [change(rows) for rows in held.tables]
            held.nbytes = sum(rows.nbytes for rows in held.tables)

    def put_back(self, taken: dict[TopicPartition, PartitionBuffer], now: float) -> None:
        """Return buffers whose commit failed, ahead of anything buffered since."""
        for tp, held in taken.items():
            newer = self.partitions.get(tp)
            if newer is not None:
                held.last = newer.last
                held.tables.extend(newer.tables)
                held.nbytes += newer.nbytes
            self.partitions[tp] = held
        if self.partitions and self.opened_at is None:
            self.opened_at = now


def flush_due(now: float, opened_at: float | None, last_flush_started: float | None, interval_s: float,
              nbytes: int, max_bytes: int) -> bool:
    """At most one commit per interval, counted from the start of the previous flush: records that
    arrived while it wrote and committed have waited that long already (freshness: the interval
    plus one flush, not two), and a quiet table's first record is not held for a further interval."""
    if opened_at is None:
        return False
    since = opened_at if last_flush_started is None else min(opened_at, last_flush_started)
    return now - since >= interval_s or nbytes >= max_bytes
