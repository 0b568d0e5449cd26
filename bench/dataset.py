"""The benchmark dataset: page-view events, fixed and deterministic (seeded), in JSON and in Avro.

Each event has a long id, strings (user, session, page, referrer, user agent, IP address), a double and an
int, a timestamp, a nested struct (`device`) and a list of strings (`tags`). The same events
encode to ~360 bytes of JSON (compact, the timestamp as ISO-8601 with `Z`) or ~185 bytes of Avro
in the Confluent wire format (magic byte 0, the 4-byte schema id, the Avro body; the schema is
registered in the Schema Registry under `<topic>-value`).

Producing: confluent_kafka with lz4 compression (what most production producers use; the
consumer side pays its decompression, as it would in production), `linger.ms` 50 and 1 MiB
batches, idempotent, records spread round-robin over the topic's partitions, keyed by user.

    .venv/bin/python -m bench.dataset        # prints the sizes of both encodings
"""

from __future__ import annotations

import io
import json
import random
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
import pyarrow as pa
from confluent_kafka import Consumer, Producer, TopicPartition

from tabletopic.decode.avro import avro_to_arrow
from tabletopic.local.topics import create_topic

SEED = 20260301
PARTITIONS = 4
FORMATS = ("json", "avro")
START = datetime(2026, 3, 1, tzinfo=UTC)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

PAGES = ["/", "/search", "/cart", "/checkout", "/product/4711", "/account/orders", "/help/returns"]
REFERRERS = ["https://www.example.com/c/{}?utm_source=newsletter", "https://search.example.org/?q=item+{}",
             "https://social.example.net/p/{}"]
OSES = [("ios", ["iPhone 15", "iPhone 13 mini", "iPad Air"]), ("android", ["Pixel 8", "Galaxy S24", "Moto G"]),
        ("linux", ["ThinkPad X1", "Framework 13"]), ("windows", ["Surface Pro", "XPS 13"])]
AGENTS = ["Mozilla/5.0 Firefox/128.0", "Mozilla/5.0 Safari/17.5", "Mozilla/5.0 Chrome/126.0"]
TAGS = ["new", "promo", "mobile", "returning", "campaign-7", "checkout-ab"]

AVRO_SCHEMA: dict[str, Any] = {
    "type": "record", "name": "PageView", "namespace": "bench", "fields": [
        {"name": "event_id", "type": "long"},
        {"name": "user_id", "type": "string"},
        {"name": "session_id", "type": "string"},
        {"name": "page", "type": "string"},
        {"name": "referrer", "type": ["null", "string"], "default": None},
        {"name": "amount", "type": "double"},
        {"name": "quantity", "type": "int"},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "device", "type": {"type": "record", "name": "Device", "fields": [
            {"name": "os", "type": "string"}, {"name": "version", "type": "int"},
            {"name": "model", "type": "string"}]}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "user_agent", "type": "string"},
        {"name": "ip", "type": "string"},
    ],
}
_PARSED_AVRO = fastavro.parse_schema(AVRO_SCHEMA)

# The JSON table's value columns, as a user would create the table (JSON inference alone makes no
# timestamp column): numbers long/double, `at` a timestamptz.
JSON_VALUE_SCHEMA = pa.schema([
    pa.field("event_id", pa.int64()),
    pa.field("user_id", pa.string()),
    pa.field("session_id", pa.string()),
    pa.field("page", pa.string()),
    pa.field("referrer", pa.string()),
    pa.field("amount", pa.float64()),
    pa.field("quantity", pa.int64()),
    pa.field("at", pa.timestamp("us", tz="UTC")),
    pa.field("device", pa.struct([pa.field("os", pa.string()), pa.field("version", pa.int64()),
                                  pa.field("model", pa.string())])),
    pa.field("tags", pa.list_(pa.string())),
    pa.field("user_agent", pa.string()),
    pa.field("ip", pa.string()),
])


def value_schema(fmt: str) -> pa.Schema:
    """The table's value columns: for Avro, what tabletopic makes of the writer schema."""
    return JSON_VALUE_SCHEMA if fmt == "json" else avro_to_arrow(_PARSED_AVRO)


def events(count: int, seed: int = SEED, first: int = 0) -> Iterator[dict[str, Any]]:
    """Events `first .. first+count-1` of the stream for `seed`; `at` is microseconds since the epoch."""
    rng = random.Random(seed * 1_000_003 + first)
    base = int((START - _EPOCH).total_seconds()) * 1_000_000
    for i in range(first, first + count):
        os_name, models = OSES[rng.randrange(len(OSES))]
        yield {
            "event_id": i,
            "user_id": f"user-{rng.randrange(200_000):06d}",
            "session_id": f"{rng.getrandbits(128):032x}",
            "page": PAGES[rng.randrange(len(PAGES))],
            "referrer": None if rng.random() < 0.2 else REFERRERS[rng.randrange(3)].format(rng.randrange(10_000)),
            "amount": round(rng.uniform(0, 500), 2),
            "quantity": rng.randrange(1, 10),
            "at": base + i * 37_000 + rng.randrange(1000) * 1000,
            "device": {"os": os_name, "version": rng.randrange(1, 20), "model": models[rng.randrange(len(models))]},
            "tags": rng.sample(TAGS, k=rng.randrange(0, 4)),
            "user_agent": AGENTS[rng.randrange(len(AGENTS))],
            "ip": f"{rng.choice((10, 172, 192, 203))}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}",
        }


def _iso_ms(micros: int) -> str:
    at = _EPOCH + timedelta(microseconds=micros)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def encode_json(event: dict[str, Any]) -> bytes:
    return json.dumps({**event, "at": _iso_ms(event["at"])}, separators=(",", ":")).encode()


_HEADER = struct.Struct(">bI")


def avro_encoder(schema_id: int) -> Callable[[dict[str, Any]], bytes]:
    header = _HEADER.pack(0, schema_id)

    def encode(event: dict[str, Any]) -> bytes:
        out = io.BytesIO()
        out.write(header)
        fastavro.schemaless_writer(out, _PARSED_AVRO, event)
        return out.getvalue()

    return encode


def register_avro(registry_url: str, topic: str) -> int:
    """Register the Avro schema under `<topic>-value`; its id."""
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

    client = SchemaRegistryClient({"url": registry_url})
    try:
        return int(client.register_schema(f"{topic}-value", Schema(json.dumps(AVRO_SCHEMA), "AVRO")))
    finally:
        client.close()


def encoder(fmt: str, registry_url: str | None, topic: str) -> Callable[[dict[str, Any]], bytes]:
    if fmt == "json":
        return encode_json
    if fmt == "avro":
        if registry_url is None:
            raise ValueError("avro needs a schema registry")
        return avro_encoder(register_avro(registry_url, topic))
    raise ValueError(f"unknown format {fmt!r}: json or avro")


PRODUCER_SETTINGS = {
    "linger.ms": 50,
    "batch.size": 1 << 20,
    "compression.type": "lz4",
    "enable.idempotence": True,
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 1 << 20,
}


@dataclass
class Produced:
    topic: str
    format: str
    records: int
    partitions: int
    value_bytes: int
    seconds: float
    ends: dict[tuple[str, int], int]  # the log end per partition: what a writer must reach

    @property
    def bytes_per_record(self) -> float:
        return self.value_bytes / self.records


def produce(bootstrap: str, topic: str, fmt: str, records: int, partitions: int = PARTITIONS,
            registry_url: str | None = None, seed: int = SEED) -> Produced:
    """Create `topic` and fill it with `records` events in `fmt`."""
    create_topic(bootstrap, topic, partitions)
    encode = encoder(fmt, registry_url, topic)
    producer = Producer({"bootstrap.servers": bootstrap, **PRODUCER_SETTINGS})
    started = time.perf_counter()
    value_bytes = 0
    for n, event in enumerate(events(records, seed)):
        value = encode(event)
        value_bytes += len(value)
        while True:
            try:
                producer.produce(topic, value, event["user_id"].encode(), partition=n % partitions)
                break
            except BufferError:
                producer.poll(0.05)
        if n % 20_000 == 0:
            producer.poll(0)
    if producer.flush(120):
        raise RuntimeError(f"records not delivered to {topic}")
    seconds = time.perf_counter() - started
    ends = log_ends(bootstrap, topic, partitions)
    if sum(ends.values()) != records:
        raise RuntimeError(f"{topic} holds {sum(ends.values())} records, not {records}")
    return Produced(topic, fmt, records, partitions, value_bytes, seconds, ends)


def log_ends(bootstrap: str, topic: str, partitions: int) -> dict[tuple[str, int], int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-watermarks"})
    try:
        return {(topic, p): int(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1])
                for p in range(partitions)}
    finally:
        consumer.close()


def main() -> None:
    sample = list(events(20_000))
    avro = avro_encoder(1)
    json_bytes = sum(len(encode_json(e)) for e in sample) / len(sample)
    avro_bytes = sum(len(avro(e)) for e in sample) / len(sample)
    print(f"json: {json_bytes:.0f} bytes/record, avro (wire format): {avro_bytes:.0f} bytes/record")
    print(encode_json(sample[0]).decode())


if __name__ == "__main__":
    main()
