"""Dead letters copied to a Kafka topic (optional), after they are committed to `<table>__dlq`.

The table is the record of truth (exactly once); the topic copy is at least once: a worker that
dies after the table commit and before the copy is flushed copies those dead letters again.
Each copy keeps the original key, value and headers and adds `tabletopic.*` headers naming
where it came from and why.
"""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa
from confluent_kafka import Producer

from tabletopic.deadletter import rows as dead_letter
from tabletopic.decode import metadata
from tabletopic.exceptions import CommitError
from tabletopic.kafka.client_logs import with_logger

FLUSH_TIMEOUT_S = 30.0


class DeadLetterTopic:
    def __init__(self, kafka_settings: Mapping[str, str], topic: str) -> None:
        client = {k: v for k, v in kafka_settings.items() if not k.startswith(("group.", "auto.", "enable.auto"))}
        self.topic = topic
        self._producer = Producer(with_logger({**client, "enable.idempotence": True, "linger.ms": 20}))

    def send(self, letters: pa.Table) -> None:
        for row in letters.to_pylist():
            headers = [*(row[metadata.HEADERS] or []),
                       ("tabletopic.topic", row[metadata.TOPIC].encode()),
                       ("tabletopic.partition", str(row[metadata.PARTITION]).encode()),
                       ("tabletopic.offset", str(row[metadata.OFFSET]).encode()),
                       ("tabletopic.reason", row[dead_letter.REASON].encode()),
                       ("tabletopic.message", row[dead_letter.MESSAGE].encode()[:1000])]
            while True:
                try:
                    self._producer.produce(self.topic, key=row[metadata.KEY], value=row[dead_letter.VALUE],
                                           headers=headers)
                    break
                except BufferError:
                    self._producer.poll(0.1)
        left = self._producer.flush(FLUSH_TIMEOUT_S)
        if left:
            raise CommitError(f"dead-letter topic {self.topic}: {left} copies not delivered in {FLUSH_TIMEOUT_S}s")
