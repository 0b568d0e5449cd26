"""Holding a replay (a rebuild, a backfill) to a rate of records read, so the live writer beside it keeps
its share of the machine: pure decisions, the loops that read do the waiting."""

from __future__ import annotations

from collections.abc import Sequence

NAP_S = 0.2  # a throttled loop's other duties (commits, a lease, progress) go on between naps


def throttle_wait(read: int, elapsed_s: float, max_per_second: float | None) -> float:
    """Seconds to wait so that `read` records over `elapsed_s` stay within `max_per_second`. None or 0: no limit."""
    if not max_per_second:
        return 0.0
    return max(0.0, read / max_per_second - elapsed_s)


def rate_shares(max_per_second: float | None, records: Sequence[int]) -> list[float | None]:
    """A limit on several readers together, split in proportion to the records each has to read, so that
    they all end about together; a reader with nothing to read gets the smallest share a limit allows."""
    if not max_per_second:
        return [None] * len(records)
    total = sum(records)
    if total <= 0:
        return [max_per_second / max(1, len(records))] * len(records)
    return [max(max_per_second * n / total, max_per_second / total) for n in records]
