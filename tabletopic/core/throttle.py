"""Holding a replay (a rebuild, a backfill) to a rate of records read, so the live writer beside it keeps
its share of the machine: pure decisions, the loops that read do the waiting."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

NAP_S = 0.2  # a throttled loop's other duties (commits, a lease, progress) go on between naps
# Time spent not reading (a slow commit, an outage) saves up at most this much reading: after a stall the
# replay does not rush at the live writer just when it recovers.
BURST_S = 1.0


def throttle_wait(read: int, elapsed_s: float, max_per_second: float | None) -> float:
    """Seconds to wait so that `read` records over `elapsed_s` stay within `max_per_second`. None or 0: no limit."""
    if not max_per_second:
        return 0.0
    return max(0.0, read / max_per_second - elapsed_s)


class Throttle:
    """`wait(read)`: how long a loop that has read `read` records waits before it reads more."""

    def __init__(self, max_per_second: float | None, clock: Callable[[], float] = time.monotonic,
                 burst_s: float = BURST_S) -> None:
        self.max_per_second = max_per_second
        self._clock = clock
        self._burst_s = burst_s
        self._origin = clock()

    def wait(self, read: int) -> float:
        if not self.max_per_second:
            return 0.0
        now = self._clock()
        self._origin = max(self._origin, now - read / self.max_per_second - self._burst_s)
        return throttle_wait(read, now - self._origin, self.max_per_second)


def rate_shares(max_per_second: float | None, records: Sequence[int]) -> list[float | None]:
    """A limit on several readers together, split in proportion to the records each has to read, so that
    they all end about together; a reader with nothing to read gets the smallest share a limit allows."""
    if not max_per_second:
        return [None] * len(records)
    total = sum(records)
    if total <= 0:
        return [max_per_second / max(1, len(records))] * len(records)
    return [max_per_second * (max(n, 1) / total) for n in records]
