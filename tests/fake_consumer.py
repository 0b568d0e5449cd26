"""An in-memory consumer-group member (tabletopic/kafka/interface.py GroupMember) for broker-free tests.

It holds each partition's log, fires the rebalance handlers when a test says so (inside `poll`,
as librdkafka does), honours pause, resume and seek, and records what the service asked of it.
A position outside the log is reported once through `out_of_range` and not fetched until sought,
as GroupConsumer does with `auto.offset.reset=error`. A poll that returns nothing has waited its
timeout: it moves the clock on instead of sleeping.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from tabletopic.core.records import RecordChunk
from tabletopic.kafka.errors import KafkaException
from tabletopic.kafka.interface import TP, RebalanceHandlers

MAX_POLLS = 2000  # a loop that is never stopped fails its test instead of spinning


class FakeClock:
    """Time that moves only by the waits the fake skipped (and a microsecond a reading, so that it never
    stands still): a test's decisions do not depend on how fast the machine runs it."""

    TICK_S = 1e-6

    def __init__(self) -> None:
        self._start = time.monotonic()
        self._ticks = 0
        self.skipped = 0.0

    def __call__(self) -> float:
        self._ticks += 1
        return self._start + self.skipped + self._ticks * self.TICK_S

    def advance(self, seconds: float) -> None:
        self.skipped += seconds


@dataclass
class Log:
    start: int = 0  # the first offset still held (retention moves it on)
    records: list[tuple[bytes | None, bytes | None]] = field(default_factory=list)  # (key, value) at each offset
    # Offsets that hold no record (a transaction marker, an aborted or compacted-away record): passed, not handed over.
    gaps: set[int] = field(default_factory=set)

    @property
    def end(self) -> int:
        return len(self.records)


class FakeConsumer:
    def __init__(self, clock: FakeClock | None = None, start: str = "earliest") -> None:
        self.clock = clock or FakeClock()
        self.start = start
        self.logs: dict[TP, Log] = {}
        self.ids: dict[str, str] = {}
        self.assigned: set[TP] = set()
        self.out_of_range: set[TP] = set()
        self.authentication_error: str | None = None
        self.paused: set[TP] = set()
        self.positions: dict[TP, int] = {}
        self.consumed: dict[TP, int] = {}  # past what poll handed over (and gaps passed); unknown after a seek
        self.group_offsets: dict[TP, int] = {}
        self.group_commits: list[tuple[dict[TP, int], bool]] = []
        self.calls: list[tuple[str, object]] = []  # ("pause" | "resume" | "seek" | ..., argument), in order
        self.broker_away = False  # metadata requests (ids, watermarks) fail
        self.subscribed: list[str] = []
        self.closed = False
        self.polls = 0
        self.before_poll: list[Callable[[FakeConsumer], None]] = []  # each runs at the start of every poll
        self._handlers: RebalanceHandlers | None = None
        self._reported: set[TP] = set()  # out of range, said already at this position

    # --- the test's side ---------------------------------------------------------------------

    def create_topic(self, topic: str, partitions: int = 1) -> None:
        self.ids[topic] = uuid.uuid4().hex
        for partition in range(partitions):
            self.logs[(topic, partition)] = Log()

    def produce(self, topic: str, partition: int, values: list[bytes | None],
                keys: list[bytes | None] | None = None) -> None:
        self.logs[(topic, partition)].records.extend(zip(keys or [None] * len(values), values, strict=True))

    def mark(self, topic: str, partition: int, count: int = 1) -> None:
        """`count` offsets that hold no record (transaction markers, say) at the log's end."""
        log = self.logs[(topic, partition)]
        log.gaps.update(range(log.end, log.end + count))
        log.records.extend([(None, None)] * count)

    def recreate(self, topic: str) -> None:
        """Deleted and created again under the same name: a new id, empty logs."""
        partitions = sum(1 for t, _ in self.logs if t == topic)
        self.create_topic(topic, partitions)

    def assign(self, tps: list[TP]) -> None:
        assert self._handlers is not None, "subscribe first"
        starts = self._handlers.start_offsets(tps)
        for tp in tps:
            self.positions[tp] = starts.get(tp, self._start_of(tp))
            self.consumed.pop(tp, None)
            self._reported.discard(tp)
        self.assigned.update(tps)
        self.paused.difference_update(tps)  # a partition assigned afresh starts unpaused
        self.pause(self._handlers.hold(tps))

    def revoke(self, tps: list[TP]) -> None:
        self._release(tps, lost=False)

    def lose(self, tps: list[TP]) -> None:
        self._release(tps, lost=True)

    def _release(self, tps: list[TP], lost: bool) -> None:
        assert self._handlers is not None
        try:
            (self._handlers.lost if lost else self._handlers.revoked)(tps)
        finally:
            self.assigned.difference_update(tps)
            self.paused.difference_update(tps)
            for tp in tps:
                self.positions.pop(tp, None)
                self.consumed.pop(tp, None)

    def _start_of(self, tp: TP) -> int:
        log = self.logs[tp]
        return log.start if self.start == "earliest" else log.end

    # --- GroupMember -------------------------------------------------------------------------

    def subscribe(self, topics: list[str], handlers: RebalanceHandlers) -> None:
        self.subscribed, self._handlers = topics, handlers

    def poll(self, max_records: int, timeout_s: float) -> list[RecordChunk]:
        self.polls += 1
        assert self.polls <= MAX_POLLS, "the loop was never stopped"
        for hook in list(self.before_poll):
            hook(self)
        chunks = []
        room = max_records
        for tp in sorted(self.assigned - self.paused):
            log, position = self.logs[tp], self.positions[tp]
            if not log.start <= position <= log.end:
                if tp not in self._reported:
                    self._reported.add(tp)
                    self.out_of_range.add(tp)
                continue
            window = log.records[position:position + room]
            if not window:
                continue
            offsets = [o for o in range(position, position + len(window)) if o not in log.gaps]
            taken = [log.records[o] for o in offsets]
            if taken:
                chunks.append(RecordChunk(tp[0], tp[1], offsets, [k for k, _ in taken], [v for _, v in taken],
                                          [1767225600000 + o for o in offsets], [None] * len(taken)))
            self.positions[tp] = self.consumed[tp] = position + len(window)
            room -= len(window)
            if not room:
                break
        if not chunks:
            self.clock.advance(timeout_s)
        return chunks

    def pause(self, tps: list[TP]) -> None:
        owned = [tp for tp in tps if tp in self.assigned]
        if owned:
            self.calls.append(("pause", sorted(owned)))
            self.paused.update(owned)

    def resume(self, tps: list[TP]) -> None:
        owned = [tp for tp in tps if tp in self.assigned]
        if owned:
            self.calls.append(("resume", sorted(owned)))
            self.paused.difference_update(owned)

    def seek(self, tp: TP, offset: int) -> None:
        if tp in self.assigned:
            self.calls.append(("seek", (tp, offset)))
            self.positions[tp] = offset
            self.consumed.pop(tp, None)
            self._reported.discard(tp)

    def reposition(self, tp: TP, offset: int | None) -> None:
        if tp in self.assigned:
            self.calls.append(("reposition", (tp, offset)))
            self.positions[tp] = self._start_of(tp) if offset is None else offset
            self.consumed.pop(tp, None)
            self._reported.discard(tp)

    def consumed_to(self, tps: list[TP]) -> dict[TP, int]:
        return {tp: self.consumed[tp] for tp in tps if tp in self.consumed}

    def topic_ids(self, topics: list[str], timeout_s: float = 10.0) -> dict[str, str]:
        self._answer()
        return {t: self.ids[t] for t in topics if t in self.ids}

    def watermarks(self, tp: TP) -> tuple[int, int]:
        self._answer()
        log = self.logs[tp]
        return log.start, log.end

    def log_end(self, tp: TP) -> int | None:
        return None if self.broker_away else self.logs[tp].end

    def commit_group_offsets(self, offsets: Mapping[TP, int], wait: bool = False) -> None:
        owned = {tp: n for tp, n in offsets.items() if tp in self.assigned}
        if owned:
            self.group_offsets.update(owned)
            self.group_commits.append((owned, wait))

    def close(self) -> None:
        if self.assigned:
            self.revoke(sorted(self.assigned))
        self.closed = True

    def _answer(self) -> None:
        if self.broker_away:
            raise KafkaException("the fake broker is away")

    def list_topics(self, timeout_s: float) -> list[str]:
        self._answer()
        return sorted(self.ids)
