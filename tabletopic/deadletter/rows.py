"""The rows of `<table>__dlq`: the record as it came (key, value, headers, coordinates) and why it is here. Pure.

Bounded, so a flood of huge poison records cannot fill the store: a key or value over
MAX_KEPT_BYTES is kept as its first MAX_KEPT_BYTES bytes, and the message (the schema stays as
it is, so existing `__dlq` tables take the rows) starts with one marker per cut field, e.g.
`[truncated value: 9437184 bytes, sha256 <64 hex>, first 65536 kept] oversized: ...`. Such a
letter cannot be replayed (the record is not all there); the digest proves which record it was.
The message is cut to MAX_MESSAGE_CHARS (markers first, so they always survive).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Sequence

import pyarrow as pa

from tabletopic.core import metadata
from tabletopic.core.records import RecordChunk
from tabletopic.decode.base import BadValue

VALUE = "_kafka_value"
REASON = "reason"
MESSAGE = "message"
SCHEMA_ID = "schema_id"
DEAD_AT = "dead_at"

MAX_KEPT_BYTES = 64 * 1024
MAX_MESSAGE_CHARS = 1000
TRUNCATED_MARK = "[truncated "
_MARK = re.compile(r"\[truncated (?P<name>key|value): (?P<length>\d+) bytes, sha256 [0-9a-f]{64}, first \d+ kept\]")

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
    columns[metadata.KEY] = pa.array([kept(k) for k in picked.keys], pa.binary())
    columns[VALUE] = pa.array([kept(v) for v in picked.values], pa.binary())
    columns[REASON] = pa.array([str(b.code) for b in bad], pa.string())
    columns[MESSAGE] = pa.array([message(b.reason, key, value) for b, key, value
                                 in zip(bad, picked.keys, picked.values, strict=True)], pa.string())
    # A wire header's id is 4 unsigned bytes; the registry's ids are positive Java ints (the message has any other).
    columns[SCHEMA_ID] = pa.array([b.schema_id if b.schema_id is not None and 0 <= b.schema_id < 2**31 else None
                                   for b in bad], pa.int32())
    columns[DEAD_AT] = pa.repeat(pa.scalar(dead_at, pa.timestamp("us", tz="UTC")), len(bad))
    return pa.Table.from_arrays([columns[f.name] for f in SCHEMA], schema=SCHEMA)


def kept(data: bytes | None) -> bytes | None:
    """What a dead letter keeps of a key or value: all of it, or its first MAX_KEPT_BYTES bytes."""
    return data if data is None or len(data) <= MAX_KEPT_BYTES else data[:MAX_KEPT_BYTES]


def message(reason: str, key: bytes | None, value: bytes | None) -> str:
    """The letter's message: a marker per cut field, then the reason, at most MAX_MESSAGE_CHARS."""
    marks = [_mark(name, data) for name, data in (("key", key), ("value", value))
             if data is not None and len(data) > MAX_KEPT_BYTES]
    text = " ".join([*marks, reason])
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS - 3] + "..."


def is_truncated(letter_message: str | None) -> bool:
    """Whether the letter holds only a prefix of its key or value (then it cannot be replayed)."""
    return letter_message is not None and letter_message.startswith(TRUNCATED_MARK)


def cut_length(letter_message: str | None, name: str) -> int | None:
    """The whole length of the key or value (`name`) a letter kept only a prefix of, else None."""
    found = _MARK.match(letter_message or "")
    while found is not None:
        if found["name"] == name:
            return int(found["length"])
        found = _MARK.match(letter_message or "", found.end() + 1)
    return None


def _mark(name: str, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    return f"{TRUNCATED_MARK}{name}: {len(data)} bytes, sha256 {digest}, first {MAX_KEPT_BYTES} kept]"
