"""A stop asked of the process: set by a signal handler or a watcher thread, read by the service's loop."""

from __future__ import annotations


class StopFlag:
    """A stop asked of the process, and by what (a signal's name, logged once out of its handler). Lock-free:
    a signal handler may run while its own thread holds any lock (an Event's too)."""

    def __init__(self) -> None:
        self.requested = False
        self.reason: str | None = None

    def set(self, reason: str | None = None) -> None:
        if not self.requested:
            self.reason = reason
            self.requested = True
