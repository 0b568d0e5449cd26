"""/healthz, /readyz and /metrics on one port, served on a thread beside the work."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from tabletopic.config import Config
from tabletopic.exceptions import ConfigError
from tabletopic.observe import health, metrics
from tabletopic.observe.multiproc import ENV
from tabletopic.observe.probes import Probe, broker_probe, catalog_probe

log = structlog.get_logger(__name__)


def _registry() -> CollectorRegistry:
    if not os.environ.get(ENV):
        return REGISTRY
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def worker_values(registry: CollectorRegistry, name: str) -> dict[str, float]:
    """One value per live worker of a gauge labelled `worker`."""
    values: dict[str, float] = {}
    for family in registry.collect():
        if family.name == name:
            for sample in family.samples:
                values[sample.labels["worker"]] = sample.value
    return values


@dataclass
class Endpoints:
    catalog: Probe
    broker: Probe
    expected_workers: int
    stall_s: float
    started: float
    clock: Callable[[], float] = time.time

    def healthz(self) -> str | None:
        beats = worker_values(_registry(), metrics.heartbeat._name)
        now = self.clock()
        return health.liveness(beats, now, now - self.started, self.stall_s)

    def readyz(self) -> str | None:
        registry = _registry()
        joined = worker_values(registry, metrics.joined._name)
        return health.readiness(joined, self.expected_workers, self.catalog.error(), self.broker.error(),
                                metrics.halted_tables(registry.collect()))

    def metrics(self) -> bytes:
        return generate_latest(_registry())


def _handler(endpoints: Endpoints) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._answer(200, endpoints.metrics(), CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/readyz"):
                problem = endpoints.healthz() if path == "/healthz" else endpoints.readyz()
                text = "ok\n" if problem is None else problem + "\n"
                self._answer(200 if problem is None else 503, text.encode(), "text/plain; charset=utf-8")
            else:
                self._answer(404, b"not found: try /healthz, /readyz or /metrics\n", "text/plain; charset=utf-8")

        def _answer(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # probes every few seconds would drown the log

    return Handler


def serve(config: Config, expected_workers: int) -> ThreadingHTTPServer:
    endpoints = Endpoints(catalog_probe(config.catalog), broker_probe(config.kafka), expected_workers,
                          config.http.stall_seconds, time.time())
    try:
        server = ThreadingHTTPServer((config.http.host, config.http.port), _handler(endpoints))
    except OSError as exc:
        where = f"{config.http.host}:{config.http.port}"
        raise ConfigError("http.port", f"cannot listen on {where}: {exc.strerror}") from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="tabletopic-http", daemon=True).start()
    log.info("http.serving", host=config.http.host, port=server.server_address[1],
             endpoints=["/healthz", "/readyz", "/metrics"])
    return server
