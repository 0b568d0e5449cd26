"""Decisions about buffered memory and failing tables. Pure: the service acts on them.

- Memory: when the process's buffers pass the cap, flush the largest tables early; if the
  tables that hold the memory cannot commit (they are backing off), pause consumption until
  the buffers are below half the cap, polling on so the group keeps the member.
- A table whose commits fail backs off on its own (1 s, 2 s, … 60 s); the others go on.
"""

from __future__ import annotations

from collections.abc import Mapping

from tabletopic.core.backoff import RetryPolicy

MAX_TABLE_BACKOFF_S = 60.0
TABLE_BACKOFF = RetryPolicy(initial_backoff_s=1.0, max_backoff_s=MAX_TABLE_BACKOFF_S, jitter=False)


def table_backoff(failures_in_a_row: int) -> float:
    return TABLE_BACKOFF.backoff(failures_in_a_row)


def tables_to_flush_early(sizes: Mapping[str, int], cap: int, blocked: set[str]) -> list[str]:
    """The tables to flush now, largest first, until what stays buffered fits under `cap`."""
    total = sum(sizes.values())
    chosen: list[str] = []
    for name, size in sorted(sizes.items(), key=lambda item: -item[1]):
        if total < cap:
            break
        if name in blocked or size == 0:
            continue
        chosen.append(name)
        total -= size
    return chosen


def should_pause(total: int, cap: int) -> bool:
    return total >= cap


def should_resume(total: int, cap: int) -> bool:
    # Hysteresis: resuming at the cap itself would pause again on the next poll.
    return total < cap // 2
