"""Unknown schema ids cost one registry request per id for a while (issue 15, item 8): counted against
a tiny registry on loopback that answers the Confluent API's schema-by-id call."""

from __future__ import annotations

import json
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow as pa
import pytest

from tabletopic.core.reasons import Reason
from tabletopic.core.records import RecordChunk
from tabletopic.decode.avro import AvroDecoder, WriterSchemas
from tabletopic.kafka.registry import UNKNOWN_ID_TTL_S, SchemaRegistry, UnknownSchemaId

SCHEMA = {"type": "record", "name": "E", "fields": [{"name": "id", "type": "long"}]}
UNKNOWN = 4242


class FakeRegistry(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.schemas: dict[int, str] = {}
        self.requests: Counter[str] = Counter()
        self.answer = threading.Event()  # cleared: requests wait (to have several in flight at once)
        self.answer.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeRegistry

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        self.server.requests[path] += 1
        self.server.answer.wait(timeout=30)
        schema_id = int(path.rsplit("/", 1)[-1]) if path.startswith("/schemas/ids/") else -1
        body: dict[str, object] = {"error_code": 40403, "message": "Schema not found"}
        status = 404
        if schema_id in self.server.schemas:
            status, body = 200, {"schema": self.server.schemas[schema_id]}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    server = FakeRegistry()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.answer.set()
    server.shutdown()
    server.server_close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def chunk(values: list[bytes | None]) -> RecordChunk:
    n = len(values)
    return RecordChunk("t", 0, list(range(n)), [None] * n, values, [0] * n, [None] * n)


def test_a_thousand_records_with_an_unknown_id_cost_one_request(fake: FakeRegistry) -> None:
    decoder = AvroDecoder(WriterSchemas(SchemaRegistry(fake.url)), pa.schema([pa.field("id", pa.int64())]))
    values: list[bytes | None] = [struct.pack(">bI", 0, UNKNOWN) + b"\x02"] * 1000
    decoded = decoder.decode(chunk(values))
    assert [b.code for b in decoded.bad] == [Reason.UNKNOWN_SCHEMA_ID] * 1000
    assert fake.requests == {f"/schemas/ids/{UNKNOWN}": 1}


def test_an_id_registered_later_is_found_once_its_miss_has_expired(fake: FakeRegistry) -> None:
    clock = Clock()
    registry = SchemaRegistry(fake.url, clock=clock)
    with pytest.raises(UnknownSchemaId):
        registry.schema_text(UNKNOWN)
    fake.schemas[UNKNOWN] = json.dumps(SCHEMA)
    clock.now += UNKNOWN_ID_TTL_S - 1
    with pytest.raises(UnknownSchemaId):  # still remembered as unknown: not asked again
        registry.schema_text(UNKNOWN)
    assert sum(fake.requests.values()) == 1
    clock.now += 1
    assert json.loads(registry.schema_text(UNKNOWN)) == SCHEMA
    assert registry.schema_text(UNKNOWN) == registry.schema_text(UNKNOWN)  # and kept, as known ids are
    assert fake.requests == {f"/schemas/ids/{UNKNOWN}": 2}


def test_concurrent_lookups_of_one_id_make_one_request(fake: FakeRegistry) -> None:
    registry = SchemaRegistry(fake.url)
    fake.answer.clear()
    outcomes: list[str] = []

    def look_up() -> None:
        try:
            registry.schema_text(UNKNOWN)
        except UnknownSchemaId:
            outcomes.append("unknown")

    threads = [threading.Thread(target=look_up) for _ in range(8)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while not fake.requests and time.monotonic() < deadline:  # the first lookup is in flight
        time.sleep(0.01)
    time.sleep(0.2)  # the others reach the registry meanwhile (if nothing holds them back)
    fake.answer.set()
    for thread in threads:
        thread.join(timeout=30)
    assert outcomes == ["unknown"] * 8
    assert fake.requests == {f"/schemas/ids/{UNKNOWN}": 1}
