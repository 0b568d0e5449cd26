"""What a table does with a chunk's bad records, by its `errors` setting. Pure: the sink acts on it.

- `dlq`: every bad record is a dead letter, up to `max_dead_letters_per_minute` (deadletter/flood.py):
  the record that would go over it is not taken, nor anything after it, and the table halts there
  (DeadLetterFlood);
- `skip`: every bad record is counted, logged and dropped;
- `fail`: the first bad record stops the table (RecordError naming its topic, partition, offset and
  reason); the good records before it are taken, so the table reads again from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tabletopic.config import ErrorPolicy
from tabletopic.core.records import RecordChunk
from tabletopic.deadletter.flood import DeadLetterFlood
from tabletopic.decode.base import BadValue
from tabletopic.exceptions import RecordError


@dataclass(frozen=True)
class FloodLimit:
    per_minute: int
    in_window: int  # dead letters the table took in the last minute, before this chunk


@dataclass(frozen=True)
class Verdict:
    last: int  # the last offset the records and dead letters taken cover (when any are taken)
    dead_letters: list[BadValue] = field(default_factory=list)
    skipped: list[BadValue] = field(default_factory=list)
    # Raised once the records before index `stop_at` of the chunk are taken; None: the whole chunk is.
    stop: RecordError | DeadLetterFlood | None = None
    stop_at: int = 0


def decide(errors: ErrorPolicy, table: str, chunk: RecordChunk, bad: list[BadValue], last: int,
           flood: FloodLimit | None = None) -> Verdict:
    """The verdict on `chunk`, whose records `bad` (ascending, not empty) are bad; `last`: the last
    offset the chunk stands for. `flood`: the dead-letter rate limit, if the table has one."""
    if errors == "fail":
        first = bad[0]
        reason = f"{first.code}: {first.reason}"
        error = RecordError(chunk.topic, chunk.partition, chunk.offsets[first.index], reason)
        before = chunk.offsets[first.index - 1] if first.index > 0 else chunk.offsets[0] - 1
        return Verdict(before, stop=error, stop_at=first.index)
    if errors != "dlq":
        return Verdict(last, skipped=bad)
    room = max(0, flood.per_minute - flood.in_window) if flood is not None else len(bad)
    if len(bad) <= room:
        return Verdict(last, dead_letters=bad)
    assert flood is not None
    over, letters = bad[room], bad[:room]  # the first record past the limit, and those it leaves room for
    offset = chunk.offsets[over.index]
    flooded = DeadLetterFlood(table, chunk.topic, chunk.partition, offset, flood.in_window + len(letters) + 1,
                              flood.per_minute)
    return Verdict(offset - 1, dead_letters=letters, stop=flooded, stop_at=over.index)
