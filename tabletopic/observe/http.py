"""/healthz, /readyz and /metrics on one port, served on a thread beside the work."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from tabletopic.config import Config
from tabletopic.exceptions import ConfigError
from tabletopic.observe import health, metrics
from tabletopic.observe.multiproc import ENV

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


class Verdict(Protocol):
    def error(self) -> str | None: ...


@dataclass
class PublishedVerdict:
    """A pool's verdict on a service, as its probing worker published it in the metrics files."""

    probe: str

    def error(self) -> str | None:
        return metrics.probe_verdict(_registry().collect(), self.probe)


@dataclass
class Endpoints:
    catalog: Verdict
    broker: Verdict
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


class Answers(Protocol):
    def healthz(self) -> str | None: ...
    def readyz(self) -> str | None: ...
    def metrics(self) -> bytes: ...


def _handler(endpoints: Answers, timeout_s: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = timeout_s  # the socket's: a client that sends its request slowly, or half of it, is dropped

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


_BUSY = b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class BoundedHTTPServer(ThreadingHTTPServer):
    """A thread per connection, at most `max_connections` at once, each for at most `timeout_s` in all
    (request and answer, however slowly the client trickles bytes). Past the cap, the accepting thread
    answers 503 itself and closes: slow clients cannot pile up threads."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], max_connections: int,
                 timeout_s: float) -> None:
        self._slots = threading.BoundedSemaphore(max_connections)
        self._timeout_s = timeout_s
        self._deadlines: dict[socket.socket, float] = {}
        self._lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            try:
                request.setblocking(False)  # a fresh socket's buffer takes these bytes; never wait on the client
                request.send(_BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        with self._lock:
            self._deadlines[request] = time.monotonic() + self._timeout_s
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._done(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._done(request)

    def _done(self, request: socket.socket) -> None:
        with self._lock:
            self._deadlines.pop(request, None)
        self._slots.release()

    def service_actions(self) -> None:
        """On the serving thread, between accepts (every poll interval): cut connections past their time. The
        handler's blocked read or write then ends, and so does its thread."""
        now = time.monotonic()
        with self._lock:
            overdue = [request for request, deadline in self._deadlines.items() if deadline <= now]
            for request in overdue:
                del self._deadlines[request]
        for request in overdue:
            with contextlib.suppress(OSError):  # closed meanwhile
                request.shutdown(socket.SHUT_RDWR)


def make_server(host: str, port: int, endpoints: Answers, timeout_s: float, max_connections: int) -> BoundedHTTPServer:
    """The server, listening on host:port (not yet serving)."""
    return BoundedHTTPServer((host, port), _handler(endpoints, timeout_s), max_connections, timeout_s)


def serve(config: Config, expected_workers: int, pool: bool = False) -> ThreadingHTTPServer:
    """`pool`: served by a pool's supervisor, which reads the probes' verdicts its probing worker publishes
    instead of loading the catalog and Kafka clients to probe itself."""
    catalog: Verdict
    broker: Verdict
    if pool:
        catalog, broker = PublishedVerdict("catalog"), PublishedVerdict("broker")
    else:
        from tabletopic.observe.probes import broker_probe, catalog_probe

        catalog, broker = catalog_probe(config.catalog), broker_probe(config.kafka)
    endpoints = Endpoints(catalog, broker, expected_workers, config.http.stall_seconds, time.time())
    try:
        server = make_server(config.http.host, config.http.port, endpoints, config.http.request_timeout_seconds,
                             config.http.max_connections)
    except OSError as exc:
        where = f"{config.http.host}:{config.http.port}"
        raise ConfigError("http.port", f"cannot listen on {where}: {exc.strerror}") from None
    threading.Thread(target=server.serve_forever, name="tabletopic-http", daemon=True).start()
    log.info("http.serving", host=config.http.host, port=server.server_address[1],
             endpoints=["/healthz", "/readyz", "/metrics"])
    return server
