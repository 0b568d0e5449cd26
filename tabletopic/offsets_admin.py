"""`tabletopic offsets show` and `offsets reset`: where a table stands in its topics, and moving it.

A reset is an explicit act recorded in the table's history: an empty snapshot whose offsets map
has the chosen partitions set (not merged: it may go backwards) and whose summary says what
changed (`tabletopic.offsets-reset`), and records the reset topics' current ids: a table halted
because its topic was recreated counts in the new topic from then on. Stop the writers of the
table first, or let them find the new offsets: a writer halted on invalid offsets goes on by
itself after a reset.
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

from tabletopic.commit.committer import append_files, table_offsets, table_topic_ids
from tabletopic.commit.offsets import (
    OffsetMap,
    TopicPartition,
    encode_offsets,
    encode_topic_ids,
    identity_problem,
    offsets_key,
    position_problem,
    topic_ids_key,
)
from tabletopic.exceptions import CommitError, TabletopicError
from tabletopic.kafka.consumer import topic_ids
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
    recorded_id: str | None = None  # the topic id the table's offsets count in (None: not recorded)
    current_id: str | None = None  # the topic's id on the broker now

    @property
    def lag(self) -> int | None:
        return None if self.committed is None else max(0, self.log_end - self.committed)

    @property
    def problem(self) -> str | None:
        recreated = identity_problem(self.recorded_id, self.current_id)
        if recreated is not None:
            return recreated
        return None if self.committed is None else position_problem(self.committed, self.log_start, self.log_end)


def positions(catalog: Catalog, identifier: str, group: str, kafka: Mapping[str, str],
              topics: list[str]) -> list[PartitionPosition]:
    table = catalog.load_table(identifier)
    committed = table_offsets(table, group)
    recorded = table_topic_ids(table, group)
    current = topic_ids(kafka, topics)
    rows = []
    for topic in topics:
        bounds = log_bounds(kafka, topic)
        for partition in sorted(set(bounds) | {p for t, p in committed if t == topic}):
            low, high = bounds.get(partition, (0, 0))
            rows.append(PartitionPosition(topic, partition, committed.get((topic, partition)), low, high,
                                          recorded.get(topic), current.get(topic)))
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


def reset(catalog: Catalog, identifier: str, group: str, targets: Mapping[TopicPartition, int],
          ids: Mapping[str, str] | None = None) -> OffsetMap:
    """Commit the new offsets, counted in the topics whose ids are `ids` (the broker's current ones);
    returns the previous offsets of the partitions reset."""
    for _ in range(MAX_ATTEMPTS):
        table = catalog.load_table(identifier)
        committed = table_offsets(table, group)
        recorded = table_topic_ids(table, group)
        now_ids = {**recorded, **{t: i for t, i in (ids or {}).items() if any(t == rt for rt, _ in targets)}}
        _refuse_a_recreated_topic_in_part(committed, recorded, now_ids, targets)
        before = {tp: committed.get(tp) for tp in targets}
        record = {f"{t}/{p}": [before[(t, p)], n] for (t, p), n in targets.items()}
        properties = {
            offsets_key(group): encode_offsets({**committed, **targets}),
            RESET_KEY: json.dumps({"partitions": record, "by": socket.gethostname(), "at_ms": int(time.time() * 1000),
                                   **({"topic_ids": now_ids} if ids else {})}),
            **({topic_ids_key(group): encode_topic_ids(now_ids)} if now_ids else {}),
        }
        try:
            append_files(table, [], properties)
        except CommitFailedException:
            continue
        log.warning("offsets.reset", table=identifier, group=group, partitions=record)
        return {tp: n for tp, n in before.items() if n is not None}
    raise CommitError(f"{identifier}: offsets reset did not land after {MAX_ATTEMPTS} attempts")


def _refuse_a_recreated_topic_in_part(committed: Mapping[TopicPartition, int], recorded: Mapping[str, str],
                                      now_ids: Mapping[str, str], targets: Mapping[TopicPartition, int]) -> None:
    """A reset records the topic's new id for all its partitions: one left out would then read the new
    topic from the old topic's offset, skipping its first records."""
    for topic, now_id in now_ids.items():
        if recorded.get(topic) in (None, now_id):
            continue
        left = sorted(p for t, p in committed if t == topic and (t, p) not in targets)
        if left:
            raise TabletopicError(
                f"topic {topic!r} was recreated: reset all its partitions at once (leave out --partitions); "
                f"partitions {left} hold offsets of the old topic, which say nothing about the new one")
