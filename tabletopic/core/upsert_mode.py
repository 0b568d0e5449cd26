"""How an upsert table records, in its own properties, what makes it one: readers (audit, compaction,
replay, status, backfill) dispatch on the table, never on a config that may have changed since.

The key columns themselves are the table's Iceberg identifier fields."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

MODE = "tabletopic.mode"  # "upsert"; absent on an append table
KEY_SOURCE = "tabletopic.key-source"  # "kafka-key": the record's Kafka key; "value": columns of the value
KEY_FORMAT = "tabletopic.key-format"  # how the Kafka key is decoded: json | avro | string | bytes
ENVELOPE = "tabletopic.envelope"  # "none" | "debezium"

KEY_COLUMN = "_key"  # the one key column a string or bytes Kafka key becomes
# Hidden bool column of buffered rows, true where the record deletes its key. Dots inside a name no decoder
# gives a column (JSON refuses `..`, Avro names have no dots), so no value field can take its place.
DELETE_FLAG = "__tabletopic..delete"

KeySource = Literal["kafka-key", "value"]
KeyFormat = Literal["json", "avro", "string", "bytes"]
Envelope = Literal["none", "debezium"]


@dataclass(frozen=True)
class UpsertMode:
    key_source: KeySource
    key_format: KeyFormat
    envelope: Envelope = "none"

    def properties(self) -> dict[str, str]:
        return {MODE: "upsert", KEY_SOURCE: self.key_source, KEY_FORMAT: self.key_format, ENVELOPE: self.envelope}


def upsert_mode(properties: Mapping[str, str]) -> UpsertMode | None:
    """The table's upsert settings, or None for an append table."""
    if properties.get(MODE) != "upsert":
        return None
    key_source = properties.get(KEY_SOURCE, "kafka-key")
    key_format = properties.get(KEY_FORMAT, "json")
    envelope = properties.get(ENVELOPE, "none")
    if key_source not in ("kafka-key", "value") or key_format not in ("json", "avro", "string", "bytes") \
            or envelope not in ("none", "debezium"):
        raise ValueError(f"unknown upsert settings in the table's properties: {key_source=}, {key_format=}, "
                         f"{envelope=}")
    return UpsertMode(key_source, key_format, envelope)  # type: ignore[arg-type]
