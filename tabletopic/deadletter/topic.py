"""Dead letters copied to a Kafka topic (optional), after they are committed to `<table>__dlq`.

The table is the record of truth (exactly once); the topic copy is at least once: a worker that
dies after the table commit and before the copy is flushed copies those dead letters again.
Each copy keeps the original key, value and headers and adds `tabletopic.*` headers naming
where it came from and why.

A copy never stops the writer: sending happens after the dead letters are committed, so an
exception here would only send the flush round again, and again. A letter too big for the
producer goes with its value cut to fit and a `tabletopic.truncated` header holding the value's
real length (as does a letter that kept only a prefix of its value, deadletter/rows.py); one the
broker refuses as too large goes again with no value at all. Every other failure (the broker
refusing the copy, no delivery in time) is logged with the record's topic, partition and offset and counted in
`tabletopic_dead_letter_topic_failures_total{table,reason}`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import structlog

from tabletopic.core import metadata
from tabletopic.deadletter import rows as dead_letter
from tabletopic.kafka.producer import DeliveryError, Headers, Producer, ProduceRefused
from tabletopic.observe import metrics

log = structlog.get_logger(__name__)

FLUSH_TIMEOUT_S = 30.0
# librdkafka's default `message.max.bytes`: the largest record the producer takes.
DEFAULT_MAX_MESSAGE_BYTES = 1_000_000
# Room left for the record's framing beside key, value and headers.
RECORD_OVERHEAD = 1024
TRUNCATED = "tabletopic.truncated"

Coordinates = tuple[str, int, int]  # the dead record's topic, partition, offset


@dataclass
class Copy:
    coordinates: Coordinates
    key: bytes | None
    value: bytes | None
    headers: Headers = field(default_factory=list)
    truncated_from: int | None = None  # the value's real length when it was cut


def record_bytes(key: bytes | None, value: bytes | None, headers: Headers) -> int:
    return (len(key or b"") + len(value or b"") + RECORD_OVERHEAD
            + sum(len(name.encode()) + len(item or b"") for name, item in headers))


def fitted(copy: Copy, budget: int) -> Copy | None:
    """`copy` as it may go in a record of at most `budget` bytes: whole, or its value cut with a marker
    header; None when even the key and headers do not fit. Pure."""
    if record_bytes(copy.key, copy.value, copy.headers) <= budget:
        return copy
    length = copy.truncated_from if copy.truncated_from is not None else len(copy.value or b"")
    headers = [*(h for h in copy.headers if h[0] != TRUNCATED), (TRUNCATED, str(length).encode())]
    room = budget - record_bytes(copy.key, None, headers)
    if room < 0:
        return None
    return Copy(copy.coordinates, copy.key, (copy.value or b"")[:room], headers, length)


def without_value(copy: Copy) -> Copy:
    """The copy with no value (and the marker): for a topic that refused the value's size."""
    length = copy.truncated_from if copy.truncated_from is not None else len(copy.value or b"")
    headers = [h for h in copy.headers if h[0] != TRUNCATED]
    return Copy(copy.coordinates, copy.key, None, [*headers, (TRUNCATED, str(length).encode())], length)


def copies_of(letters: pa.Table) -> list[Copy]:
    """One copy per dead letter: its key, value and headers, plus where it came from and why. Pure."""
    copies = []
    for row in letters.to_pylist():
        headers: Headers = [*(row[metadata.HEADERS] or []),
                            ("tabletopic.topic", row[metadata.TOPIC].encode()),
                            ("tabletopic.partition", str(row[metadata.PARTITION]).encode()),
                            ("tabletopic.offset", str(row[metadata.OFFSET]).encode()),
                            ("tabletopic.reason", row[dead_letter.REASON].encode()),
                            ("tabletopic.message", row[dead_letter.MESSAGE].encode()[:1000])]
        coordinates = (row[metadata.TOPIC], row[metadata.PARTITION], row[metadata.OFFSET])
        length = dead_letter.cut_length(row[dead_letter.MESSAGE], "value")  # the letter kept a prefix
        if length is not None:
            headers.append((TRUNCATED, str(length).encode()))
        copies.append(Copy(coordinates, row[metadata.KEY], row[dead_letter.VALUE], headers, length))
    return copies


class DeadLetterTopic:
    def __init__(self, kafka_settings: Mapping[str, str], topic: str, table: str = "") -> None:
        client = {k: v for k, v in kafka_settings.items() if not k.startswith(("group.", "auto.", "enable.auto"))}
        self.topic = topic
        self.table = table or topic
        self._budget = int(client.get("message.max.bytes", DEFAULT_MAX_MESSAGE_BYTES))
        self._producer = Producer({**client, "enable.idempotence": True, "linger.ms": 20})
        self._too_large: list[Copy] = []  # refused by the broker for their size, in the last flush

    def send(self, letters: pa.Table) -> None:
        """Copy each dead letter to the topic and wait for the deliveries. Never raises: a copy that
        cannot be made or delivered is logged with its record's coordinates and counted."""
        self._producer.poll(0)  # reports of copies an earlier send left in flight
        for copy in copies_of(letters):
            fit = fitted(copy, self._budget)
            if fit is None:
                self._failed(copy.coordinates, "too_large", f"key and headers alone are over {self._budget} bytes")
                continue
            if fit is not copy:  # cut here (a letter kept in part says so in its header already)
                self._truncated(fit, f"over the producer's message.max.bytes ({self._budget})")
            self._produce(fit)
        self._flush()
        refused, self._too_large = self._too_large, []
        for copy in refused:
            stub = without_value(copy)
            self._truncated(stub, "the topic refused its size")
            self._produce(stub)
        if refused:
            self._flush()

    def _produce(self, copy: Copy) -> None:
        deadline = time.monotonic() + FLUSH_TIMEOUT_S
        while True:
            try:
                self._producer.produce(self.topic, key=copy.key, value=copy.value, headers=copy.headers,
                                       on_delivery=functools.partial(self._delivered, copy))
                return
            except BufferError:  # the producer's queue is full: wait for deliveries to free it
                if time.monotonic() > deadline:
                    self._failed(copy.coordinates, "queue_full", f"the producer's queue stayed full {FLUSH_TIMEOUT_S}s")
                    return
                self._producer.poll(0.1)
            except ProduceRefused as exc:
                self._failed(copy.coordinates, exc.name, exc.text)
                return

    def _delivered(self, copy: Copy, error: DeliveryError | None) -> None:
        if error is None:
            return
        if error.too_large and copy.value:
            self._too_large.append(copy)
            metrics.record_dead_letter_topic_failure(self.table, error.name)
            log.warning("dead_letter_topic.rejected", **self._where(copy.coordinates), reason=error.name,
                        error=error.text, retry="without the value")
            return
        self._failed(copy.coordinates, error.name, error.text)

    def _flush(self) -> None:
        left = self._producer.flush(FLUSH_TIMEOUT_S)
        if left:
            # Still queued: they may yet be delivered; a failure is reported by a later send.
            metrics.record_dead_letter_topic_failure(self.table, "not_delivered_in_time", left)
            log.error("dead_letter_topic.undelivered", table=self.table, dead_letter_topic=self.topic, copies=left,
                      seconds=FLUSH_TIMEOUT_S)

    def _failed(self, coordinates: Coordinates, reason: str, error: str) -> None:
        metrics.record_dead_letter_topic_failure(self.table, reason)
        log.error("dead_letter_topic.failed", **self._where(coordinates), reason=reason, error=error)

    def _truncated(self, copy: Copy, why: str) -> None:
        metrics.record_dead_letter_topic_failure(self.table, "truncated")
        log.warning("dead_letter_topic.truncated", **self._where(copy.coordinates), value_bytes=copy.truncated_from,
                    sent_bytes=len(copy.value or b""), why=why)

    def _where(self, coordinates: Coordinates) -> dict[str, Any]:
        topic, partition, offset = coordinates
        return {"table": self.table, "dead_letter_topic": self.topic, "topic": topic, "partition": partition,
                "offset": offset}
