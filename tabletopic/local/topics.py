"""Create and delete topics and produce sample events on a local broker (quickstart, tests, benchmarks)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        future.result(timeout=30)


def delete_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.delete_topics([topic]).values():
        future.result(timeout=30)


def sample_events(count: int, seed: int = 7) -> Iterator[tuple[bytes, bytes]]:
    """(key, JSON value) pairs of a realistic shape: strings, numbers, a nested struct and a list."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    pages = ["/", "/search", "/cart", "/checkout", "/product"]
    for i in range(count):
        user = f"user-{rng.randrange(1000):04d}"
        event = {
            "event_id": i,
            "user_id": user,
            "page": rng.choice(pages),
            "amount": round(rng.uniform(0, 500), 2),
            "at": (start + timedelta(seconds=i)).isoformat(),
            "device": {"os": rng.choice(["ios", "android", "linux"]), "version": rng.randrange(1, 20)},
            "tags": rng.sample(["new", "promo", "mobile", "returning"], k=rng.randrange(0, 3)),
        }
        yield user.encode(), json.dumps(event).encode()


def produce(bootstrap: str, topic: str, records: Iterator[tuple[bytes | None, bytes | None]]) -> int:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})
    count = 0
    for key, value in records:
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.1)
        count += 1
        if count % 10_000 == 0:
            producer.poll(0)
    remaining = producer.flush(60)
    if remaining:
        raise RuntimeError(f"{remaining} records not delivered to {topic}")
    return count
