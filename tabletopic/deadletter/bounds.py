"""One log line per chunk of bad records, not one per record: a poison flood cannot fill the logs. Pure."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from tabletopic.core.records import RecordChunk
from tabletopic.decode.base import BadValue

MAX_LOGGED_MESSAGE_CHARS = 300


def batch_summary(chunk: RecordChunk, bad: Sequence[BadValue]) -> dict[str, Any]:
    """The log fields for a chunk's bad records (sorted by index): where they are, how many per reason,
    and the first one's message as an example."""
    first, last = bad[0], bad[-1]
    return {
        "topic": chunk.topic,
        "partition": chunk.partition,
        "first_offset": chunk.offsets[first.index],
        "last_offset": chunk.offsets[last.index],
        "records": len(bad),
        "reasons": dict(sorted(Counter(str(b.code) for b in bad).items())),
        "example": first.reason[:MAX_LOGGED_MESSAGE_CHARS],
    }
