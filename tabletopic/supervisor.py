"""`tabletopic run --workers N`: N worker processes in one consumer group, kept alive by this parent.

Python's GIL rules out threads for decoding, so each worker is its own `tabletopic run
--workers 1` process; Kafka's group protocol spreads the partitions among them (and among
replicas on other hosts). The parent only supervises:

- a worker that dies is restarted, with a backoff that grows while it keeps dying;
- a worker that stops on a bad record (exit 1) or bad config (exit 2) is not restarted: the
  others are stopped and the parent exits with that code, since a restart meets the same input;
- SIGTERM/SIGINT are passed on; the parent waits for the workers' graceful stop and exits 0
  when all stopped cleanly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType

import structlog

from tabletopic.core.backoff import RetryPolicy
from tabletopic.core.exits import ExitCode
from tabletopic.core.stop_flag import StopFlag
from tabletopic.observe import multiproc

log = structlog.get_logger(__name__)

# A worker that ran this long before dying is healthy again: its backoff starts over.
HEALTHY_AFTER_S = 60.0
MAX_BACKOFF_S = 30.0
FATAL_EXITS = (ExitCode.BAD_RECORD, ExitCode.CONFIG)


SUPERVISOR_PID_ENV = "TABLETOPIC_SUPERVISOR_PID"
# Set for the one worker that probes the catalog and the broker for the supervisor's /readyz (observe/probes.py):
# the supervisor loads neither client, so that it stays small.
PROBING_WORKER_ENV = "TABLETOPIC_PROBING_WORKER"
# Kubernetes' grace period must cover shutdown_timeout_seconds plus this (the chart's grace margin is at least 3 s).
EXIT_MARGIN_S = 2.0
# How often a worker looks whether its supervisor is still its parent.
PARENT_CHECK_S = 0.5


def supervisor_pid() -> int | None:
    """In a worker: the pid of the supervisor that started it (None: not a pool's worker)."""
    value = os.environ.get(SUPERVISOR_PID_ENV)
    return int(value) if value else None


def probing_worker() -> bool:
    """In a worker: whether it publishes the probes' verdicts for its supervisor's /readyz."""
    return os.environ.get(PROBING_WORKER_ENV) == "1"


def stop_with_supervisor() -> None:
    """In a worker: get SIGTERM (a clean stop) when the supervisor dies, even by kill -9 (Linux)."""
    supervisor = supervisor_pid()
    if supervisor is not None and not _signal_on_supervisor_death(supervisor):
        os.kill(os.getpid(), signal.SIGTERM)


def _signal_on_supervisor_death(supervisor: int) -> bool:
    """SIGTERM when the supervisor dies (Linux). False when it is dead already (too late to be told)."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        # Sent when the supervisor's THREAD that started this process ends: Supervisor.run starts every
        # worker from the main thread (signal.signal refuses any other), which lives as long as the process.
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM))
    return os.getppid() == supervisor


class WorkerStop:
    """What makes a `tabletopic run` process stop, and stop for sure: installed first thing, before the catalog,
    the tables and the consumer are opened (a stop asked meanwhile is kept in `flag`, for the service made later).

    A stop is asked by SIGTERM/SIGINT or, in a pool's worker, by its supervisor's death (its parent-death
    signal, and a thread that watches the parent, which needs no signal handler to run). From then on the
    process has shutdown_timeout_seconds to stop cleanly, whatever phase it is in (starting up, a first poll, a
    commit retrying for minutes, a hanging catalog call): past the bound this thread ends it (exit 3), and past
    the bound plus EXIT_MARGIN_S the kernel does (SIGALRM), should Python no longer run any thread (a hang
    in the interpreter's exit, a write on a full pipe)."""

    def __init__(self, shutdown_timeout_s: float, flag: StopFlag | None = None,
                 supervisor: int | None = None) -> None:
        self.flag = flag if flag is not None else StopFlag()
        self.shutdown_timeout_s = shutdown_timeout_s
        self.supervisor = supervisor
        self._exit_at: float | None = None

    def install(self) -> None:
        """In the main thread (signal handlers can only be set there)."""
        signal.signal(signal.SIGALRM, signal.SIG_DFL)  # the kernel's bound: SIGALRM's default ends the process
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        threading.Thread(target=self._watch, name="tabletopic-stop", daemon=True).start()
        if self.supervisor is not None and not _signal_on_supervisor_death(self.supervisor):
            self.request("supervisor_gone")

    def request(self, reason: str) -> None:
        """Ask for the stop and start its bound; safe from a signal handler and from any thread."""
        if self._exit_at is None:
            self._exit_at = time.monotonic() + self.shutdown_timeout_s
            signal.setitimer(signal.ITIMER_REAL, self.shutdown_timeout_s + EXIT_MARGIN_S)
        self.flag.set(reason)

    def disarm(self) -> None:
        """The stop is done: neither the thread nor the kernel ends the process for it (a supervisor's death
        noticed later arms the bound again)."""
        signal.setitimer(signal.ITIMER_REAL, 0)
        self._exit_at = None

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        # No logging here: the handler runs between two bytecodes of the main thread, maybe inside the log's lock.
        self.request(signal.Signals(signum).name)

    def _watch(self) -> None:
        while True:
            time.sleep(PARENT_CHECK_S)
            if self.supervisor is not None and os.getppid() != self.supervisor:
                self.request("supervisor_gone")
            exit_at = self._exit_at  # read once: `disarm` may clear it meanwhile
            if exit_at is not None and time.monotonic() >= exit_at:
                _exit_past_bound(self.shutdown_timeout_s, self.flag.reason)


def _exit_past_bound(timeout: float, reason: str | None) -> None:
    try:  # said if it can be: a closed stderr (its reader gone) must not keep the process alive
        log.error("service.shutdown_timeout", seconds=timeout, stop=reason)
    finally:
        os._exit(ExitCode.SHUTDOWN_TIMEOUT)


RESTART_BACKOFF = RetryPolicy(initial_backoff_s=1.0, max_backoff_s=MAX_BACKOFF_S, jitter=False)


def restart_delay(failures_in_a_row: int) -> float:
    """1 s, 2 s, 4 s, … up to MAX_BACKOFF_S. Pure."""
    return RESTART_BACKOFF.backoff(failures_in_a_row)


@dataclass
class WorkerSlot:
    index: int
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    failures: int = 0
    restart_at: float | None = None
    exit_codes: list[int] = field(default_factory=list)


class Supervisor:
    def __init__(self, worker_argv: Sequence[str], workers: int, shutdown_timeout_s: float,
                 probing: bool = False) -> None:
        """`probing`: the first slot's worker probes the services for this process's /readyz."""
        self.worker_argv = list(worker_argv)
        self.slots = [WorkerSlot(i) for i in range(workers)]
        self.shutdown_timeout_s = shutdown_timeout_s
        self.probing = probing
        self._stopping: str | None = None  # the signal that asked the pool to stop

    def _start(self, slot: WorkerSlot) -> None:
        # One maintenance process for the pool, the parent's: not one per worker.
        # The parent serves HTTP for the pool too, from the metrics files all of them write.
        env = {**os.environ, "TABLETOPIC_MAINTENANCE__ENABLED": "false", "TABLETOPIC_HTTP__ENABLED": "false",
               SUPERVISOR_PID_ENV: str(os.getpid()),
               PROBING_WORKER_ENV: "1" if self.probing and slot.index == 0 else ""}
        slot.process = subprocess.Popen([sys.executable, "-m", "tabletopic", *self.worker_argv], env=env)
        slot.started_at = time.monotonic()
        slot.restart_at = None
        log.info("supervisor.worker_started", worker=slot.index, pid=slot.process.pid)

    def _stop_signal(self, signum: int, _frame: FrameType | None) -> None:
        # No logging here: a signal arriving while a line is being written would deadlock on its lock.
        self._stopping = signal.Signals(signum).name

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop_signal)
        signal.signal(signal.SIGINT, self._stop_signal)
        for slot in self.slots:
            self._start(slot)
        fatal: int | None = None
        while not self._stopping and fatal is None:
            time.sleep(0.2)
            now = time.monotonic()
            for slot in self.slots:
                fatal = fatal or self._check(slot, now)
        if self._stopping:
            log.info("supervisor.stopping", signal=self._stopping)
        return self._stop_all(fatal)

    def _check(self, slot: WorkerSlot, now: float) -> int | None:
        if slot.process is not None:
            code = slot.process.poll()
            if code is None:
                return None
            slot.exit_codes.append(code)
            multiproc.forget(slot.process.pid)
            slot.process = None
            if code in FATAL_EXITS:
                log.error("supervisor.worker_failed", worker=slot.index, exit_code=code)
                return code
            slot.failures = 1 if now - slot.started_at >= HEALTHY_AFTER_S else slot.failures + 1
            slot.restart_at = now + restart_delay(slot.failures)
            log.warning("supervisor.worker_died", worker=slot.index, exit_code=code,
                        restart_in_s=round(slot.restart_at - now, 1))
        if slot.restart_at is not None and now >= slot.restart_at:
            self._start(slot)
        return None

    def _stop_all(self, fatal: int | None) -> int:
        now = time.monotonic()
        for slot in self.slots:  # deaths just before the stop count as deaths, not as unclean stops
            if slot.process is not None and slot.process.poll() is not None:
                self._check(slot, now)
                slot.process = None
        running = [s.process for s in self.slots if s.process is not None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        # The workers bound their own shutdown (they exit 3 at the bound); a worker past it is stuck.
        deadline = time.monotonic() + self.shutdown_timeout_s + EXIT_MARGIN_S
        codes = []
        for process in running:
            try:
                codes.append(process.wait(timeout=max(0.1, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                process.kill()
                codes.append(process.wait())
        if fatal is not None:
            return fatal
        # A worker still starting dies of the SIGTERM itself (its handler comes just before it subscribes):
        # it had read nothing, so that is a clean stop too.
        unclean = [c for c in codes if c not in (ExitCode.OK, -signal.SIGTERM)]
        log.info("supervisor.stopped", worker_exit_codes=codes)
        return unclean[0] if unclean else ExitCode.OK
