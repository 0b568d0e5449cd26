"""The one backoff policy: every retry loop and restart delay of tabletopic is one of these. Pure."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class RetryPolicy:
    # The committer's defaults: a conflict clears as soon as we reload, so the first retries come
    # fast; an outage (catalog, object store) is better waited out at a slow pace.
    initial_backoff_s: float = 0.05
    max_backoff_s: float = 10.0
    # How long one flush keeps trying before the error goes up to the service.
    deadline_s: float = 300.0
    # "double": initial, 2 * initial, 4 * initial, ...; "linear": initial, 2 * initial, 3 * initial, ...
    growth: Literal["double", "linear"] = "double"
    # Writers sharing a table retry out of step when each waits a random 50 to 100 % of the delay.
    jitter: bool = True

    def backoff(self, attempt: int) -> float:
        """Delay before retry number `attempt` (1-based; below 1 counts as 1), capped at max_backoff_s."""
        step = max(1, attempt)
        grown = 2.0 ** min(step - 1, 64) if self.growth == "double" else float(step)
        base = min(self.max_backoff_s, self.initial_backoff_s * grown)
        return base * random.uniform(0.5, 1.0) if self.jitter else base
