"""`tabletopic offsets show` and `offsets reset`: where a table stands in its topics, and moving it.

A reset is an explicit act recorded in the table's history: an empty snapshot whose offsets map
has the chosen partitions set (not merged: it may go backwards) and whose summary says what
changed (`tabletopic.offsets-reset`). Stop the writers of the table first, or let them find
the new offsets: a writer halted on invalid offsets goes on by itself after a reset.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass

import structlog
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException

from tabletopic.commit.committer import append_files, table_offsets
from tabletopic.commit.offsets import (
    OffsetMap,
    TopicPartition,
    encode_offsets,
    offsets_key,
    position_problem,
)
from tabletopic.exceptions import CommitError, TabletopicError
from tabletopic.kafka.reader import log_bounds, offsets_at

log = structlog.get_logger(__name__)

RESET_KEY = "tabletopic.offsets-reset"
MAX_ATTEMPTS = 10


@dataclass
class PartitionPosition:
    topic: str
    partition: int
    committed: int | None  # the table's next offset
    log_start: int
    log_end: int

    @property
    def lag(self) -> int | None:
        return None if self.committed is None else max(0, self.log_end - self.committed)

    @property
    def problem(self) -> str | None:
        return None if self.committed is None else position_problem(self.committed, self.log_start, self.log_end)


def positions(catalog: Catalog, identifier: str, group: str, kafka: Mapping[str, str],
              topics: list[str]) -> list[PartitionPosition]:
    committed = table_offsets(catalog.load_table(identifier), group)
    rows = []
    for topic in topics:
        bounds = log_bounds(kafka, topic)
        for partition in sorted(set(bounds) | {p for t, p in committed if t == topic}):
            low, high = bounds.get(partition, (0, 0))
            rows.append(PartitionPosition(topic, partition, committed.get((topic, partition)), low, high))
    return rows


def reset_targets(
    kafka: Mapping[str, str], topic: str, partitions: list[int], to: str, value: int | None = None
) -> dict[TopicPartition, int]:
    """The new next offset per partition: `to` is earliest | latest | offset | timestamp (ms)."""
    bounds = log_bounds(kafka, topic)
    missing = [p for p in partitions if p not in bounds]
    if missing:
        raise TabletopicError(f"topic {topic!r} has no partition {missing}")
    if to == "earliest":
        return {(topic, p): bounds[p][0] for p in partitions}
    if to == "latest":
        return {(topic, p): bounds[p][1] for p in partitions}
    assert value is not None
    if to == "offset":
        return {(topic, p): value for p in partitions}
    return {(topic, p): n for p, n in offsets_at(kafka, topic, partitions, value).items()}


def reset(catalog: Catalog, identifier: str, group: str, targets: Mapping[TopicPartition, int]) -> OffsetMap:
    """Commit the new offsets; returns the previous ones of the partitions reset."""
    for _ in range(MAX_ATTEMPTS):
        table = catalog.load_table(identifier)
        committed = table_offsets(table, group)
        before = {tp: committed.get(tp) for tp in targets}
        record = {f"{t}/{p}": [before[(t, p)], n] for (t, p), n in targets.items()}
        properties = {
            offsets_key(group): encode_offsets({**committed, **targets}),
            RESET_KEY: json.dumps({"partitions": record, "by": socket.gethostname(), "at_ms": int(time.time() * 1000)}),
        }
        try:
            append_files(table, [], properties)
        except CommitFailedException:
            continue
        log.warning("offsets.reset", table=identifier, group=group, partitions=record)
        return {tp: n for tp, n in before.items() if n is not None}
    raise CommitError(f"{identifier}: offsets reset did not land after {MAX_ATTEMPTS} attempts")
