"""Records of one topic-partition from one poll, as plain columns. Pure: no confluent_kafka here."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RecordChunk:
    """Consecutive records of one topic-partition, in offset order (offsets may have gaps)."""

    topic: str
    partition: int
    offsets: list[int] = field(default_factory=list)
    keys: list[bytes | None] = field(default_factory=list)
    values: list[bytes | None] = field(default_factory=list)
    timestamps_ms: list[int | None] = field(default_factory=list)
    headers: list[list[tuple[str, bytes | None]] | None] = field(default_factory=list)

    @property
    def first(self) -> int:
        return self.offsets[0]

    @property
    def last(self) -> int:
        return self.offsets[-1]

    def __len__(self) -> int:
        return len(self.offsets)

    def head(self, count: int) -> RecordChunk:
        """The first `count` records."""
        return RecordChunk(
            self.topic, self.partition, self.offsets[:count], self.keys[:count], self.values[:count],
            self.timestamps_ms[:count], self.headers[:count],
        )

    def select(self, indices: list[int]) -> RecordChunk:
        """The records at `indices` (ascending)."""
        return RecordChunk(
            self.topic, self.partition, [self.offsets[i] for i in indices], [self.keys[i] for i in indices],
            [self.values[i] for i in indices], [self.timestamps_ms[i] for i in indices],
            [self.headers[i] for i in indices],
        )
