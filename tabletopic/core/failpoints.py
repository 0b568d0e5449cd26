"""Named points where a crash test kills the process (kill -9 of itself) at an exact step.

`TABLETOPIC_FAILPOINT=<name>` arms one point; nothing else reads it. Used by the tests of multi-step
operations whose every step must be safe to die after (the rebuild's cutover)."""

from __future__ import annotations

import os
import signal

ENV = "TABLETOPIC_FAILPOINT"


def reached(name: str) -> None:
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
