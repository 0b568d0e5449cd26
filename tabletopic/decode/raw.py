"""Raw mode: key and value kept as bytes."""

from __future__ import annotations

import pyarrow as pa

from tabletopic.kafka.records import RecordChunk

SCHEMA = pa.schema([pa.field("key", pa.binary()), pa.field("value", pa.binary())])


class RawDecoder:
    def decode(self, chunk: RecordChunk) -> pa.Table:
        return pa.table({"key": pa.array(chunk.keys, pa.binary()), "value": pa.array(chunk.values, pa.binary())})
