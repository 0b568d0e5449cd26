"""Is the catalog reachable, is the broker reachable: small calls with a time limit."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable, Mapping

import structlog

from tabletopic.config import CatalogConfig

log = structlog.get_logger(__name__)

PROBE_TIMEOUT_S = 5.0
# A verdict holds this long: /readyz called in a loop costs the catalog and the broker one call each per period.
PROBE_CACHE_S = 5.0


class Probe:
    """Runs a check on a thread of its own and answers at once with the latest verdict, so a slow
    or hung service costs the HTTP answer nothing (Kubernetes' probes give up after a second).
    A finished check's verdict is reused for `cache_s`. Verdicts are generic (they are served to
    anyone who can reach the port); the failure itself goes to the log, masked, when it changes."""

    def __init__(self, check: Callable[[], None], name: str = "probe", timeout_s: float = PROBE_TIMEOUT_S,
                 clock: Callable[[], float] = time.monotonic, cache_s: float = PROBE_CACHE_S) -> None:
        self._check = check
        self._name = name
        self._timeout_s = timeout_s
        self._clock = clock
        self._cache_s = cache_s
        self._lock = threading.Lock()  # HTTP requests arrive on threads of their own
        self._running: concurrent.futures.Future[None] | None = None
        self._started = 0.0
        self._checked_at: float | None = None
        self._verdict: str | None = "not checked yet"
        self._logged: str | None = None

    def error(self, wait_s: float = 0.5) -> str | None:
        with self._lock:
            now = self._clock()
            if self._running is None:
                if self._checked_at is not None and now - self._checked_at < self._cache_s:
                    return self._verdict
                self._running, self._started = self._submit(), now
            try:
                self._running.result(timeout=wait_s)
                self._note(None, None)
            except concurrent.futures.TimeoutError:
                if now - self._started > self._timeout_s:
                    self._note(f"no answer within {self._timeout_s:.0f} s", None)
                return self._verdict
            except Exception as exc:
                self._note(verdict_of(exc), exc)
            self._running = None  # done: the next call after the cache period checks again
            self._checked_at = now
            return self._verdict

    def _submit(self) -> concurrent.futures.Future[None]:
        """The check on a daemon thread: a check the service never answers must not hold the process's exit
        (an executor's threads are joined when the interpreter ends)."""
        future: concurrent.futures.Future[None] = concurrent.futures.Future()

        def run() -> None:
            try:
                self._check()
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(None)

        threading.Thread(target=run, name=f"tabletopic-probe-{self._name}", daemon=True).start()
        return future

    def _note(self, verdict: str | None, exc: Exception | None) -> None:
        self._verdict = verdict
        if verdict != self._logged:
            if verdict is None:
                log.info("probe.ok", probe=self._name)
            else:  # the details, for whoever reads the logs: masked there like every line
                log.warning("probe.failed", probe=self._name, reason=verdict,
                            error=None if exc is None else f"{type(exc).__name__}: {exc}")
            self._logged = verdict


def verdict_of(exc: BaseException) -> str:
    """What /readyz says of a failed check: the fault's reason code and fix when no retry fixes it (a 403,
    refused credentials), else only the kind of error. Never the exception's text: it may hold a URL with
    a token, a host name, a user; that goes to the log."""
    from tabletopic.commit import faults  # pyiceberg's errors: loaded where a probe runs, never in a supervisor

    fault = faults.permanent(exc)
    if fault is not None:
        return f"{fault.reason} ({fault.fix})"
    return f"{type(exc).__name__}; details in the log"


def catalog_probe(settings: CatalogConfig) -> Probe:
    from pyiceberg.catalog import Catalog

    from tabletopic.catalog.loader import open_catalog

    opened: list[Catalog] = []

    def check() -> None:
        if not opened:  # a REST catalog asks the server for its config when opened
            opened.append(open_catalog(settings))
        opened[0].list_namespaces()

    return Probe(check, "catalog")


def broker_probe(kafka: Mapping[str, str]) -> Probe:
    from tabletopic.kafka.admin import topic_lister

    return Probe(topic_lister(kafka, PROBE_TIMEOUT_S - 1), "broker")


def publish_forever(probes: Mapping[str, Probe], stopping: Callable[[], bool], period_s: float = PROBE_CACHE_S) -> None:
    """In a pool's probing worker (on a thread): each probe's verdict into the metrics files every `period_s`,
    where the supervisor's /readyz reads it (the supervisor loads no catalog or Kafka client itself)."""
    from tabletopic.observe import metrics

    while not stopping():
        for name, probe in probes.items():
            try:
                metrics.record_probe(name, probe.error(wait_s=PROBE_TIMEOUT_S))
            except Exception as exc:  # e.g. the metrics folder full: /readyz then reads the verdict as stale
                log.warning("probe.publish_failed", probe=name, error=f"{type(exc).__name__}: {exc}")
        time.sleep(period_s)
