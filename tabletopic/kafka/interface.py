"""What the service needs of a consumer-group member: GroupConsumer (consumer.py) against the broker,
an in-memory fake in the unit tests. No confluent_kafka here, so the loop can be read and tested
without it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from tabletopic.core.records import RecordChunk

TP = tuple[str, int]


@dataclass
class RebalanceHandlers:
    """What the service does on a rebalance; called on the polling thread."""

    start_offsets: Callable[[list[TP]], Mapping[TP, int]]  # table's next offsets for newly assigned partitions
    revoked: Callable[[list[TP]], None]  # flush and commit these partitions, then they go
    lost: Callable[[list[TP]], None]  # drop these partitions without committing
    hold: Callable[[list[TP]], list[TP]] = lambda tps: []  # of newly assigned ones, those to pause at once


class GroupMember(Protocol):
    """A consumer-group member. Rebalances run inside `poll`, through the handlers given to `subscribe`.
    Pause, resume, seek and group commits act on assigned partitions only (others are ignored)."""

    assigned: set[TP]  # kept up to date around the rebalance handlers
    out_of_range: set[TP]  # positions the log no longer holds, as found by poll; the owner clears it
    authentication_error: str | None  # wrong credentials: retrying will not fix them

    def subscribe(self, topics: list[str], handlers: RebalanceHandlers) -> None: ...

    def poll(self, max_records: int, timeout_s: float) -> list[RecordChunk]:
        """Up to `max_records`, one chunk per topic-partition, in offset order."""
        ...

    def pause(self, tps: list[TP]) -> None: ...

    def resume(self, tps: list[TP]) -> None: ...

    def seek(self, tp: TP, offset: int) -> None:
        """Read `tp` from `offset` next."""
        ...

    def reposition(self, tp: TP, offset: int | None) -> None:
        """Seek, also out of an error state; None: where a partition no table has seen starts."""
        ...

    def consumed_to(self, tps: list[TP]) -> dict[TP, int]:
        """Per partition, the offset past all it consumed since its assignment or last seek: past the
        transaction markers and aborted records it skipped too. Left out while unknown (nothing consumed
        since); never ahead of what `poll` has handed over."""
        ...

    def topic_ids(self, topics: list[str], timeout_s: float = 10.0) -> dict[str, str]:
        """Each topic's id as the broker has it now; a topic it does not describe is left out.
        Raises KafkaException (kafka/errors.py) when the broker does not answer."""
        ...

    def watermarks(self, tp: TP) -> tuple[int, int]:
        """The log's first offset and its end; raises KafkaException when the broker does not answer."""
        ...

    def log_end(self, tp: TP) -> int | None: ...

    def commit_group_offsets(self, offsets: Mapping[TP, int], wait: bool = False) -> None: ...

    def close(self) -> None:
        """Leave the group (runs the revoke handler first)."""
        ...
