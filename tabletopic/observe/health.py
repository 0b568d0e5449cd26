"""Pure decisions behind /healthz and /readyz: None when fine, else the reason."""

from __future__ import annotations

from collections.abc import Mapping

from tabletopic.core.fault_fixes import FIXES


def liveness(heartbeats: Mapping[str, float], now: float, running_for: float, stall_s: float) -> str | None:
    """Alive while every worker's loop has turned within `stall_s` (a commit may hold a turn for a while)."""
    if not heartbeats:
        return None if running_for < stall_s else f"no worker has started in {running_for:.0f} s"
    stalled = {worker: now - beat for worker, beat in heartbeats.items() if now - beat > stall_s}
    if stalled:
        worker, age = max(stalled.items(), key=lambda item: item[1])
        return f"worker {worker} has not turned its loop for {age:.0f} s (limit {stall_s:.0f} s)"
    return None


def readiness(joined: Mapping[str, float], expected_workers: int, catalog_error: str | None,
              broker_error: str | None, halted: Mapping[str, str] | None = None) -> str | None:
    """Ready once every worker has had its first assignment (empty counts: idle), both services answer
    and no table is halted by a fault no retry fixes (`halted`: table -> reason code)."""
    if broker_error is not None:
        return f"broker unreachable: {broker_error}"
    if catalog_error is not None:
        return f"catalog unreachable: {catalog_error}"
    if halted:
        return "; ".join(f"table {table} halted ({reason}): {FIXES.get(reason, 'see the log')}"
                         for table, reason in sorted(halted.items()))
    in_group = sum(1 for value in joined.values() if value >= 1)
    if in_group < expected_workers:
        return f"{in_group} of {expected_workers} workers have joined the consumer group"
    return None
