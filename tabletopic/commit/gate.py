"""Which assigned partitions are paused, and why. Pure: the service applies the answers to the consumer.

Every pause has a reason (memory, a table held or halted, ...). A reason covers the topics it
names, or every topic when it names none, and stands until it is lifted: it closes the
assigned partitions it covers, and those assigned while it stands. A partition is paused when
its first reason appears and resumed when its last one goes, so lifting one reason never lets
a partition go that another still holds, and no reason is forgotten across a rebalance.
"""

from __future__ import annotations

from collections.abc import Iterable

TopicPartition = tuple[str, int]

MEMORY = "memory"


def held(table: str) -> str:
    """A service the table's records need is down (or its commits hit a fault): retried later."""
    return f"hold:{table}"


def halted(table: str) -> str:
    """The table's offsets are not valid in the log: until `offsets reset`."""
    return f"halt:{table}"


class PartitionGate:
    def __init__(self) -> None:
        self._standing: dict[str, frozenset[str] | None] = {}  # reason -> topics it covers (None: all)
        self._reasons: dict[TopicPartition, set[str]] = {}  # every assigned partition -> its reasons

    def stands(self, reason: str) -> bool:
        return reason in self._standing

    def reasons(self, tp: TopicPartition) -> frozenset[str]:
        return frozenset(self._reasons.get(tp, ()))

    def is_paused(self, tp: TopicPartition) -> bool:
        return bool(self._reasons.get(tp))

    @property
    def paused(self) -> list[TopicPartition]:
        return sorted(tp for tp, reasons in self._reasons.items() if reasons)

    def close(self, reason: str, topics: Iterable[str] | None = None) -> list[TopicPartition]:
        """Raise `reason` over `topics` (every topic when None; a reason standing already widens).
        Returns the assigned partitions to pause now: those that had no reason before."""
        covered = None if topics is None else frozenset(topics)
        if reason in self._standing:
            before = self._standing[reason]
            covered = None if before is None or covered is None else before | covered
        self._standing[reason] = covered
        newly = []
        for tp, reasons in self._reasons.items():
            if reason not in reasons and _covers(covered, tp):
                if not reasons:
                    newly.append(tp)
                reasons.add(reason)
        return sorted(newly)

    def open(self, reason: str) -> list[TopicPartition]:
        """Lift `reason`. Returns the partitions to resume now: those it was the last reason of."""
        self._standing.pop(reason, None)
        freed = []
        for tp, reasons in self._reasons.items():
            if reason in reasons:
                reasons.discard(reason)
                if not reasons:
                    freed.append(tp)
        return sorted(freed)

    def assign(self, tps: Iterable[TopicPartition]) -> list[TopicPartition]:
        """Partitions joining this member (they start unpaused). Returns those to pause at once."""
        closed = []
        for tp in tps:
            reasons = {reason for reason, covered in self._standing.items() if _covers(covered, tp)}
            self._reasons[tp] = reasons
            if reasons:
                closed.append(tp)
        return sorted(closed)

    def release(self, tps: Iterable[TopicPartition]) -> None:
        """Partitions leaving this member (revoked or lost): the standing reasons stay for their next owner here."""
        for tp in tps:
            self._reasons.pop(tp, None)


def _covers(covered: frozenset[str] | None, tp: TopicPartition) -> bool:
    return covered is None or tp[0] in covered
