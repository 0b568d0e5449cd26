"""One metrics folder per `tabletopic run`, shared by its workers and its maintenance process.

prometheus_client's multiprocess mode keeps each process's values in memory-mapped files in
`PROMETHEUS_MULTIPROC_DIR`; the process that serves /metrics merges them. The variable must be
set before prometheus_client is first imported, and children inherit it.
"""

from __future__ import annotations

import os
import shutil
import tempfile

ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare() -> str | None:
    """Set up a fresh folder for this run unless a parent already did; returns it if this process owns it."""
    if os.environ.get(ENV):
        return None
    folder = tempfile.mkdtemp(prefix="tabletopic-metrics-")
    os.environ[ENV] = folder
    return folder


def remove(folder: str | None) -> None:
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def forget(pid: int) -> None:
    """A worker process has exited: its live gauges (lag, buffer, heartbeat) no longer count."""
    if os.environ.get(ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
