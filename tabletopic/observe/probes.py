"""Is the catalog reachable, is the broker reachable: small calls with a time limit."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Mapping
from typing import Any

from tabletopic import logs
from tabletopic.commit import faults
from tabletopic.config import CatalogConfig

PROBE_TIMEOUT_S = 5.0


class Probe:
    """Runs a check on a thread of its own and answers at once with the latest verdict, so a slow
    or hung service costs the HTTP answer nothing (Kubernetes' probes give up after a second)."""

    def __init__(self, check: Callable[[], None], timeout_s: float = PROBE_TIMEOUT_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._check = check
        self._timeout_s = timeout_s
        self._clock = clock
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self._running: concurrent.futures.Future[None] | None = None
        self._started = 0.0
        self._verdict: str | None = "not checked yet"

    def error(self, wait_s: float = 0.5) -> str | None:
        now = self._clock()
        if self._running is None:
            self._running, self._started = self._pool.submit(self._check), now
        try:
            self._running.result(timeout=wait_s)
            self._verdict = None
        except concurrent.futures.TimeoutError:
            if now - self._started > self._timeout_s:
                self._verdict = f"no answer within {self._timeout_s:.0f} s"
            return self._verdict
        except Exception as exc:
            self._verdict = verdict_of(exc)
        self._running = None  # done: the next call checks again
        return self._verdict


def verdict_of(exc: BaseException) -> str:
    """What /readyz says of a failed check: the fault's reason and fix first when no retry fixes it (a 403,
    refused credentials), and never a known secret (the answer does not pass through the logs' masking)."""
    text = f"{type(exc).__name__}: {exc}"
    fault = faults.permanent(exc)
    if fault is not None:
        text = f"{fault.reason} ({fault.fix}): {text}"
    return logs.masked(text)[:500]


def catalog_probe(settings: CatalogConfig) -> Probe:
    from pyiceberg.catalog import Catalog

    from tabletopic.catalog.loader import open_catalog

    opened: list[Catalog] = []

    def check() -> None:
        if not opened:  # a REST catalog asks the server for its config when opened
            opened.append(open_catalog(settings))
        opened[0].list_namespaces()

    return Probe(check)


def broker_probe(kafka: Mapping[str, str]) -> Probe:
    from confluent_kafka.admin import AdminClient

    # librdkafka says what it cannot reach on its own log; the probe's answer is the reason.
    settings: dict[str, Any] = {**kafka, "log_level": 0, "error_cb": lambda _error: None}
    admin = AdminClient(settings)

    def check() -> None:
        admin.list_topics(timeout=PROBE_TIMEOUT_S - 1)

    return Probe(check)
