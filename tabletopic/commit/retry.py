"""Backoff for the committer's own retry loop. Pure."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    # A conflict clears as soon as we reload, so the first retries come fast; an outage
    # (catalog, object store) is better waited out at a slow pace.
    initial_backoff_s: float = 0.05
    max_backoff_s: float = 10.0
    # How long one flush keeps trying before the error goes up to the service.
    deadline_s: float = 300.0

    def backoff(self, attempt: int) -> float:
        """Delay before retry number `attempt` (1-based), with jitter so writers do not retry in step."""
        base = min(self.max_backoff_s, self.initial_backoff_s * (2 ** (attempt - 1)))
        return base * random.uniform(0.5, 1.0)
