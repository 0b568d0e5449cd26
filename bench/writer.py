"""`tabletopic run` as a measured child process: its log, its first assignment, its CPU and memory.

The process is reaped with `os.wait4`, whose resource usage covers the process and every
descendant it reaped (a worker pool's workers): exact user + system CPU for the whole run.
(Not its `ru_maxrss`: a child spawned from a large parent inherits the parent's peak across
exec, so it would report the benchmark's own memory.) While it runs, a TreeMonitor samples
/proc every 0.1 s: each process's peak resident set (VmHWM, kept exactly by the kernel, so a
sample any time after the peak sees it), the summed resident set, and the CPU so far.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.measure import TreeMonitor


@dataclass
class Exit:
    code: int
    cpu_s: float  # user + system of the process and all its reaped descendants


class WriterProcess:
    def __init__(self, config_path: Path, log_path: Path, env: Mapping[str, str], cpus: str | None = None) -> None:
        command = [sys.executable, "-m", "tabletopic", "run", "--config", str(config_path)]
        if cpus:
            command = ["taskset", "-c", cpus, *command]
        self.log_path = log_path
        self.started_at = time.time()
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        env={**os.environ, **env})
        self.monitor = TreeMonitor(self.process.pid, interval_s=0.1).start()
        self.events: list[dict[str, Any]] = []
        self.assigned_at: float | None = None  # wall time of the first assignment of partitions
        self.cpu_at_assigned: float | None = None
        self.exit: Exit | None = None
        self.terminated = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        with self.log_path.open("w") as out:
            for raw in self.process.stderr:
                line = raw.decode(errors="replace")
                out.write(line)
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(event, dict):
                    continue
                self.events.append(event)
                if event.get("event") == "kafka.assigned" and event.get("partitions") and self.assigned_at is None:
                    self.cpu_at_assigned = self.monitor.sample().cpu_s
                    self.assigned_at = _wall(event) or time.time()

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == event]

    def alive(self) -> bool:
        """Reaps the process if it has exited (never through Popen, which would lose its rusage)."""
        if self.exit is not None:
            return False
        pid, status, usage = os.wait4(self.process.pid, os.WNOHANG)
        if pid == 0:
            return True
        self.exit = Exit(os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime)
        self.process.returncode = self.exit.code
        self.monitor.stop()
        return False

    def terminate(self) -> None:
        """SIGTERM once: a second one could land in the interpreter's exit, after its handler is gone."""
        if not self.terminated and self.alive():
            self.terminated = True
            self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout_s: float = 120.0) -> Exit:
        deadline = time.monotonic() + timeout_s
        while self.alive():
            if time.monotonic() > deadline:
                self.process.kill()
                deadline = time.monotonic() + 30
            time.sleep(0.05)
        self._reader.join(10)
        assert self.exit is not None
        return self.exit

    def stop(self, timeout_s: float = 120.0) -> Exit:
        self.terminate()
        return self.wait(timeout_s)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "".join(self.log_path.read_text().splitlines(keepends=True)[-lines:])
        except OSError:
            return ""


def _wall(event: dict[str, Any]) -> float | None:
    stamp = event.get("timestamp")
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None
