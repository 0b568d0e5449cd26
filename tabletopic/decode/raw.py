"""Raw mode: key and value kept as bytes."""

from __future__ import annotations

import pyarrow as pa

from tabletopic.core.records import RecordChunk
from tabletopic.decode.base import Decoded

SCHEMA = pa.schema([pa.field("key", pa.binary()), pa.field("value", pa.binary())])


class RawDecoder:
    def decode(self, chunk: RecordChunk, allow_drift: bool = True) -> Decoded:
        keys, values = pa.array(chunk.keys, pa.binary()), pa.array(chunk.values, pa.binary())
        return Decoded(pa.table({"key": keys, "value": values}))
