"""Offset maps in snapshot summaries, and the verdict on a batch against them. Pure: no I/O.

A snapshot that tabletopic commits carries `tabletopic.offsets.<group>` = JSON
`{"<topic>/<partition>": next_offset}`: the *next* offset to read (last + 1), cumulative over
the table's history. The committed map is the one of the newest ancestor that carries the key.

Beside it, `tabletopic.topic-ids.<group>` = JSON `{"<topic>": "<Kafka topic id>"}`: which incarnation
of each topic the offsets count in (a topic deleted and created again gets a new id and starts
at offset 0 again). It is read from the same snapshot as the offsets map; a table written before
ids were recorded has none, and adopts the current ids with its next commit.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

from tabletopic.exceptions import OffsetsError

OFFSETS_KEY_PREFIX = "tabletopic.offsets."
COMMIT_ID_KEY = "tabletopic.commit-id"
WRITER_ID_KEY = "tabletopic.writer-id"
TOPIC_IDS_KEY_PREFIX = "tabletopic.topic-ids."

TopicPartition = tuple[str, int]
OffsetMap = dict[TopicPartition, int]


def offsets_key(group: str) -> str:
    return OFFSETS_KEY_PREFIX + group


def encode_offsets(offsets: Mapping[TopicPartition, int]) -> str:
    items = sorted(offsets.items())
    return json.dumps({f"{topic}/{partition}": next_offset for (topic, partition), next_offset in items})


def decode_offsets(text: str) -> OffsetMap:
    decoded: OffsetMap = {}
    for name, next_offset in json.loads(text).items():
        # Kafka topic names cannot hold '/', so the last one splits topic from partition.
        topic, _, partition = name.rpartition("/")
        decoded[(topic, int(partition))] = int(next_offset)
    return decoded


def topic_ids_key(group: str) -> str:
    return TOPIC_IDS_KEY_PREFIX + group


def encode_topic_ids(ids: Mapping[str, str]) -> str:
    return json.dumps(dict(sorted(ids.items())))


def committed_topic_ids(summaries_newest_first: Iterable[Mapping[str, str | None]], group: str) -> dict[str, str]:
    """The topic ids recorded with the committed offsets: those of the newest summary carrying the
    group's offsets (so the walk stops where the offsets' does); empty when it has none."""
    key = offsets_key(group)
    for summary in summaries_newest_first:
        if summary.get(key) is not None:
            text = summary.get(topic_ids_key(group))
            return {} if text is None else {str(t): str(i) for t, i in json.loads(text).items()}
    return {}


def topic_ids_to_record(
    recorded: Mapping[str, str], topics: Iterable[str], read_from: Mapping[str, str]
) -> dict[str, str]:
    """The cumulative ids map for a new snapshot: the parent's, with the ids of the topics committed
    now as they were when their records were read (a topic whose id is unknown keeps the parent's)."""
    return {**recorded, **{t: read_from[t] for t in topics if t in read_from}}


def stale_topics(recorded: Mapping[str, str], read_from: Mapping[str, str]) -> set[str]:
    """Topics whose records were read from another incarnation than the one the table counts in."""
    return {t for t, known in read_from.items() if t in recorded and recorded[t] != known}


def committed_offsets(summaries_newest_first: Iterable[Mapping[str, str | None]], group: str) -> OffsetMap:
    """The map of the newest summary that carries the group's key; empty when none does."""
    key = offsets_key(group)
    for summary in summaries_newest_first:
        text = summary.get(key)
        if text is not None:
            return decode_offsets(text)
    return {}


@dataclass(frozen=True)
class OffsetRange:
    """The offsets a buffer holds for one partition: `first..last`, both included."""

    first: int
    last: int

    def __post_init__(self) -> None:
        if self.last < self.first:
            raise OffsetsError(f"empty or inverted offset range {self.first}..{self.last}")

    @property
    def next_offset(self) -> int:
        return self.last + 1


class Verdict(Enum):
    COMMIT = "commit"  # the table's next offset is at or before `first`: append (a gap is legal)
    REPLAY = "replay"  # the table already holds everything up to `last`: drop the batch
    FENCE = "fence"  # the table holds part of the batch: another writer won; re-seek to the table's offset


def judge(batch: OffsetRange, committed_next: int | None) -> Verdict:
    if committed_next is None or committed_next <= batch.first:
        return Verdict.COMMIT
    if committed_next > batch.last:
        return Verdict.REPLAY
    return Verdict.FENCE


def passed_without_records(covered: int | None, position: int | None) -> OffsetRange | None:
    """The offsets a read-committed consumer has passed beyond `covered` (where what a table holds and
    buffers of a partition ends) without delivering a record there, given its `position` (the offset past
    all it consumed since its assignment or last seek). Such offsets hold transaction markers, records of
    aborted transactions or nothing (compacted away): no record of the topic, now or later (an offset is
    never reused, and the consumer passes only offsets below the last stable offset, whose fate is
    decided). Claiming them keeps a table's next offset at the consumer's, not one short of the log end
    behind a commit marker. None when there are none, or when either side is unknown."""
    if covered is None or position is None or position <= covered:
        return None
    return OffsetRange(covered, position - 1)


def merge_offsets(parent: Mapping[TopicPartition, int], committed: Mapping[TopicPartition, int]) -> OffsetMap:
    """The cumulative map for a new snapshot; refuses to move any partition backwards."""
    merged = dict(parent)
    for tp, next_offset in committed.items():
        previous = merged.get(tp)
        if previous is not None and next_offset < previous:
            raise OffsetsError(f"offset of {tp[0]}/{tp[1]} would go backwards: {previous} -> {next_offset}")
        merged[tp] = next_offset
    return merged


def position_problem(committed_next: int, log_start: int, log_end: int) -> str | None:
    """Why the table's next offset cannot be read from this log, or None if it can."""
    if committed_next < log_start:
        return (f"the log starts at {log_start}, after the table's next offset {committed_next}: "
                f"records {committed_next}..{log_start - 1} are gone (retention or deletion)")
    if committed_next > log_end:
        return (f"the log ends at {log_end}, before the table's next offset {committed_next}: "
                f"the topic was recreated or truncated")
    return None


def identity_problem(recorded_id: str | None, current_id: str | None) -> str | None:
    """Why the table's offsets do not count in the topic the broker has now, or None if they may.

    A table with no recorded id (written before ids were recorded) is given the benefit of the
    doubt; the log bounds are still checked. A broker that did not say is not: reading on could
    read a recreated topic from the old offsets (the check runs again shortly)."""
    if recorded_id is None or recorded_id == current_id:
        return None
    if current_id is None:
        return ("the broker did not give the topic's id (it is away, or the topic was deleted): "
                "judged again when it answers")
    return (f"the topic was recreated: its id is {current_id}, the table's offsets count in {recorded_id}; "
            f"they say nothing about the new topic's records")
