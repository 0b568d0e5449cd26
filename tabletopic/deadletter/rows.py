"""The rows of `<table>__dlq`: the record as it came (key, value, headers, coordinates) and why it is here. Pure."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pyarrow as pa

from tabletopic.decode import metadata
from tabletopic.decode.base import BadValue
from tabletopic.kafka.records import RecordChunk

VALUE = "_kafka_value"
REASON = "reason"
MESSAGE = "message"
SCHEMA_ID = "schema_id"
DEAD_AT = "dead_at"

SCHEMA = pa.schema([
    *metadata.FIELDS,
    pa.field(VALUE, pa.binary()),
    pa.field(REASON, pa.string()),
    pa.field(MESSAGE, pa.string()),
    pa.field(SCHEMA_ID, pa.int32()),
    pa.field(DEAD_AT, pa.timestamp("us", tz="UTC")),
])


def dlq_identifier(table: str) -> str:
    return f"{table}__dlq"


def dead_letter_rows(chunk: RecordChunk, bad: Sequence[BadValue], dead_at: dt.datetime) -> pa.Table:
    """One row per bad value of `chunk` (indices into the chunk)."""
    picked = chunk.select([b.index for b in bad])
    columns = metadata.metadata_arrays(picked)
    columns[VALUE] = pa.array(picked.values, pa.binary())
    columns[REASON] = pa.array([str(b.code) for b in bad], pa.string())
    columns[MESSAGE] = pa.array([b.reason for b in bad], pa.string())
    columns[SCHEMA_ID] = pa.array([b.schema_id for b in bad], pa.int32())
    columns[DEAD_AT] = pa.repeat(pa.scalar(dead_at, pa.timestamp("us", tz="UTC")), len(bad))
    return pa.Table.from_arrays([columns[f.name] for f in SCHEMA], schema=SCHEMA)
