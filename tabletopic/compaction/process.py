"""The maintenance loop's child process, as `tabletopic run` starts it. Only this handle is imported by the
starting process (a pool's supervisor imports no catalog library): the child, spawned, imports the loop."""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

import structlog

from tabletopic.config import Config

log = structlog.get_logger(__name__)


def _process_main(config: Config, parent_pid: int, stop: Any) -> None:
    from tabletopic.compaction.scheduler import run_forever

    # A parent killed with -9 cannot stop us: notice it is gone.
    run_forever(config, lambda: stop.is_set() or os.getppid() != parent_pid)


class MaintenanceProcess:
    """The maintenance loop in a child process of `tabletopic run`."""

    def __init__(self, config: Config) -> None:
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._process = context.Process(target=_process_main, args=(config, os.getpid(), self._stop),
                                        name="tabletopic-maintenance", daemon=True)

    def start(self) -> MaintenanceProcess:
        self._process.start()
        log.info("maintenance.started", pid=self._process.pid)
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._process.join(timeout_s)
        if self._process.is_alive():
            self._process.terminate()  # a compaction cut short leaves only orphans, cleaned later
            self._process.join(timeout_s)
