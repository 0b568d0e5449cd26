"""Regrouping one poll's messages into chunks: the hot path of every record (pure; messages faked)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tabletopic.kafka.consumer import group_messages


@dataclass
class FakeMessage:
    """The part of confluent_kafka.Message the regrouping reads."""

    t: str
    p: int
    o: int
    v: bytes | None = b"v"
    ts: int = 1000
    err: Any = None

    def error(self) -> Any:
        return self.err

    def topic(self) -> str:
        return self.t

    def partition(self) -> int:
        return self.p

    def offset(self) -> int:
        return self.o

    def key(self) -> bytes:
        return b"k%d" % self.o

    def value(self) -> bytes | None:
        return self.v

    def timestamp(self) -> tuple[int, int]:
        return (0, -1) if self.ts == -1 else (1, self.ts)

    def headers(self) -> None:
        return None


def test_messages_regroup_by_partition_in_offset_order_and_errors_come_apart() -> None:
    messages = [FakeMessage("a", 0, 5), FakeMessage("a", 1, 7), FakeMessage("a", 0, 6, v=None),
                FakeMessage("b", 0, 1, ts=-1), FakeMessage("a", 1, 8), FakeMessage("a", 0, -1, err="eof")]
    chunks, failed = group_messages(messages)  # type: ignore[arg-type]
    assert [(c.topic, c.partition, c.offsets) for c in chunks] == [("a", 0, [5, 6]), ("a", 1, [7, 8]), ("b", 0, [1])]
    assert chunks[0].values == [b"v", None]
    assert chunks[0].keys == [b"k5", b"k6"]
    assert chunks[0].timestamps_ms == [1000, 1000]
    assert chunks[2].timestamps_ms == [None]  # librdkafka's "no timestamp"
    assert chunks[1].headers == [None, None]
    assert [m.err for m in failed] == ["eof"]
