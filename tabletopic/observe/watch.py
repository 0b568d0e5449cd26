"""A worker's side of the metrics: once per loop turn, what only the loop knows."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

from tabletopic.commit.offsets import OffsetMap, TopicPartition
from tabletopic.observe import metrics

LAG_INTERVAL_S = 5.0


class WatchedTable(Protocol):
    identifier: str
    committed: OffsetMap
    newest_record_ms: int | None

    @property
    def buffered_bytes(self) -> int: ...


Table = TypeVar("Table", bound=WatchedTable)


def partition_lag(log_end: int, committed: int | None) -> int:
    """Records in the log the table does not hold yet (a table without an offset holds none of them)."""
    return max(log_end - (committed or 0), 0)


class Watch:
    def __init__(self, worker: str, log_end: Callable[[TopicPartition], int | None]) -> None:
        self.worker = worker
        self._log_end = log_end
        self._next_lag = 0.0
        metrics.mark_starting(worker)

    def turn(self, now: float, tables: Iterable[Table], partitions_of: Callable[[Table], list[TopicPartition]]) -> None:
        """`partitions_of`: the assigned partitions that feed a table (asked only when lag is measured)."""
        metrics.beat(self.worker)
        measure_lag = now >= self._next_lag
        if measure_lag:
            self._next_lag = now + LAG_INTERVAL_S
        wall = time.time()
        for table in tables:
            metrics.record_table_state(table.identifier, table.buffered_bytes, table.newest_record_ms, wall)
            if not measure_lag:
                continue
            for tp in partitions_of(table):
                end = self._log_end(tp)
                if end is not None:
                    committed = table.committed.get(tp)
                    metrics.record_partition(table.identifier, tp, committed, partition_lag(end, committed))

    def assigned(self) -> None:
        metrics.rebalances.labels("assigned").inc()
        metrics.mark_joined(self.worker)
        self._next_lag = 0.0

    def released(self, tables: Iterable[tuple[WatchedTable, list[TopicPartition]]], lost: bool) -> None:
        """The next owner reports these partitions; this worker says 0 so a sum over workers stays right."""
        metrics.rebalances.labels("lost" if lost else "revoked").inc()
        for table, partitions in tables:
            for tp in partitions:
                metrics.consumer_lag.labels(table.identifier, tp[0], str(tp[1])).set(0)
