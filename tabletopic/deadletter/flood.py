"""A table's dead-letter rate limit (`max_dead_letters_per_minute`): past it the table halts. Pure.

A flood of poison records would otherwise fill `<table>__dlq` as fast as it comes. The limit
counts the dead letters of the last WINDOW_S seconds, over all the table's partitions; the
record that would go over it is not taken: the table halts there (the service's halt for a
fault no retry fixes, service.py), its partitions are read again from that record, and the
table tries again a while later, when the window has room again.
"""

from __future__ import annotations

from collections import deque

from tabletopic.deadletter.rows import dlq_identifier
from tabletopic.exceptions import PermanentFault

WINDOW_S = 60.0
REASON = "dead_letter_flood"


class DeadLetterRate:
    def __init__(self, per_minute: int | None) -> None:
        self.per_minute = per_minute
        self._spent: deque[tuple[float, int]] = deque()  # (monotonic time, dead letters) in the window

    def in_window(self, now: float) -> int:
        while self._spent and self._spent[0][0] <= now - WINDOW_S:
            self._spent.popleft()
        return sum(count for _, count in self._spent)

    def room(self, now: float) -> int | None:
        """How many more dead letters the table may take now (None: no limit)."""
        if self.per_minute is None:
            return None
        return max(0, self.per_minute - self.in_window(now))

    def spend(self, count: int, now: float) -> None:
        if count:
            self._spent.append((now, count))


class DeadLetterFlood(PermanentFault):
    """A record that would take the table's dead letters over its limit: the table halts at its offset."""

    def __init__(self, table: str, topic: str, partition: int, offset: int, in_window: int, per_minute: int) -> None:
        error = (f"{in_window} dead letters in the last minute at {topic}/{partition} offset {offset}: "
                 f"over max_dead_letters_per_minute ({per_minute})")
        fix = (f"the records are refused faster than the limit allows: fix their producer (their reasons are "
               f"in {dlq_identifier(table)}) or raise max_dead_letters_per_minute; the table reads again from "
               f"offset {offset}")
        super().__init__(table, REASON, fix, error)
        self.topic = topic
        self.partition = partition
        self.offset = offset
