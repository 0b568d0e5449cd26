"""The HTTP server's bounds: a client that sends half a request is dropped after the timeout, and past
the connection cap a new connection is answered 503 at once, without a thread of its own."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tabletopic.observe.http import BoundedHTTPServer, make_server

TIMEOUT_S = 0.5
CAP = 3
DEADLINE_S = 20.0  # far above TIMEOUT_S: only a server that never drops the client reaches it


class Fine:
    def healthz(self) -> str | None:
        return None

    def readyz(self) -> str | None:
        return "catalog unreachable: ConnectionError; details in the log"

    def metrics(self) -> bytes:
        return b"# nothing\n"


def running(timeout_s: float) -> Iterator[BoundedHTTPServer]:
    server = make_server("127.0.0.1", 0, Fine(), timeout_s, CAP)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def server() -> Iterator[BoundedHTTPServer]:
    yield from running(TIMEOUT_S)


@pytest.fixture
def patient_server() -> Iterator[BoundedHTTPServer]:
    """One whose slow clients stay until they leave: the cap is reached for as long as the test needs."""
    yield from running(DEADLINE_S * 3)


def connect(server: BoundedHTTPServer) -> socket.socket:
    client = socket.create_connection(server.server_address[:2], timeout=DEADLINE_S)
    return client


def request(server: BoundedHTTPServer, path: str) -> bytes:
    with connect(server) as client:
        client.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        return receive_all(client)


def receive_all(client: socket.socket) -> bytes:
    data = b""
    while chunk := client.recv(65536):
        data += chunk
    return data


def handler_threads() -> int:
    return sum(1 for t in threading.enumerate() if "process_request_thread" in t.name)


def test_a_half_sent_request_is_dropped_after_the_timeout(server: BoundedHTTPServer) -> None:
    with connect(server) as client:
        client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never the blank line that ends it
        # The server closes the connection (recv returns b""), well before our own deadline would.
        assert receive_all(client) == b""


def test_a_client_trickling_its_request_is_dropped_after_the_timeout(server: BoundedHTTPServer) -> None:
    """Each byte well within the socket timeout, the request never done: the time limit is the whole
    connection's, not one read's."""
    with connect(server) as client:
        client.sendall(b"GET /healthz HTTP/1.1\r\n")
        deadline = time.monotonic() + DEADLINE_S
        closed = False
        while not closed and time.monotonic() < deadline:
            try:
                client.sendall(b"X")
            except OSError:  # reset by the server
                break
            readable, _, _ = select.select([client], [], [], TIMEOUT_S / 5)
            if readable:
                try:
                    closed = client.recv(1024) == b""
                except OSError:
                    break
        else:
            assert closed, "the server kept a trickling client until our deadline"


def test_past_the_cap_a_connection_gets_503_without_a_thread(patient_server: BoundedHTTPServer) -> None:
    server = patient_server
    before = handler_threads()
    with contextlib.ExitStack() as stack:
        slow = [stack.enter_context(connect(server)) for _ in range(CAP)]
        for client in slow:
            client.sendall(b"GET /readyz HTTP/1.1\r\n")
        deadline = time.monotonic() + DEADLINE_S
        while handler_threads() < before + CAP and time.monotonic() < deadline:
            time.sleep(0.01)
        extra = [stack.enter_context(connect(server)) for _ in range(20)]
        answers = [receive_all(client) for client in extra]
        assert all(answer.startswith(b"HTTP/1.0 503") for answer in answers), answers[:2]
        assert handler_threads() <= before + CAP
    # The slow clients have gone: their slots come back.
    deadline = time.monotonic() + DEADLINE_S
    while not request(server, "/healthz").startswith(b"HTTP/1.0 200") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert request(server, "/healthz").endswith(b"ok\n")


def test_readyz_answers_the_generic_reason(server: BoundedHTTPServer) -> None:
    answer = request(server, "/readyz")
    assert answer.startswith(b"HTTP/1.0 503")
    assert answer.endswith(b"catalog unreachable: ConnectionError; details in the log\n")
