"""The names of the Kafka metadata columns, apart from their Arrow types (core/metadata.py): config
checks need the names only, and a process that only supervises never loads Arrow."""

from __future__ import annotations

TOPIC = "_kafka_topic"
PARTITION = "_kafka_partition"
OFFSET = "_kafka_offset"
TIMESTAMP = "_kafka_timestamp"
KEY = "_kafka_key"
HEADERS = "_kafka_headers"
NAMES = frozenset({TOPIC, PARTITION, OFFSET, TIMESTAMP, KEY, HEADERS})
