"""The Kafka metadata columns every row carries (unless switched off), built as whole Arrow arrays."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from tabletopic.core.columns import HEADERS, KEY, NAMES, OFFSET, PARTITION, TIMESTAMP, TOPIC
from tabletopic.core.records import RecordChunk

__all__ = ["FIELDS", "HEADERS", "HEADERS_TYPE", "KEY", "NAMES", "OFFSET", "PARTITION", "TIMESTAMP", "TOPIC",
           "metadata_arrays"]

HEADERS_TYPE = pa.map_(pa.string(), pa.binary())
FIELDS = [
    pa.field(TOPIC, pa.string()),
    pa.field(PARTITION, pa.int32()),
    pa.field(OFFSET, pa.int64()),
    pa.field(TIMESTAMP, pa.timestamp("us", tz="UTC")),
    pa.field(KEY, pa.binary()),
    pa.field(HEADERS, HEADERS_TYPE),
]
assert frozenset(f.name for f in FIELDS) == NAMES


def metadata_arrays(chunk: RecordChunk) -> dict[str, pa.Array]:
    count = len(chunk)
    return {
        TOPIC: pa.repeat(pa.scalar(chunk.topic, pa.string()), count),
        PARTITION: pa.repeat(pa.scalar(chunk.partition, pa.int32()), count),
        OFFSET: pa.array(chunk.offsets, pa.int64()),
        TIMESTAMP: pc.multiply(pa.array(chunk.timestamps_ms, pa.int64()), 1000).cast(pa.timestamp("us", tz="UTC")),
        KEY: pa.array(chunk.keys, pa.binary()),
        # Most records carry no headers: no per-record conversion then.
        HEADERS: (pa.nulls(count, HEADERS_TYPE) if chunk.headers.count(None) == count
                  else pa.array(chunk.headers, HEADERS_TYPE)),
    }
