"""Read a topic's offsets (not its values' meaning): for the audit and the offsets commands; the topics
that exist (for `topic_pattern`); a range of a topic's records, for backfill."""

from __future__ import annotations

import typing
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from tabletopic.core.records import RecordChunk
from tabletopic.exceptions import AuditError
from tabletopic.kafka.client_logs import with_logger
from tabletopic.kafka.consumer import PREFETCH, group_messages

# Metadata and watermark calls against a healthy local or remote cluster answer well within this.
REQUEST_TIMEOUT_S = 30.0


@dataclass
class PartitionLog:
    low: int  # first offset still in the log
    high: int  # log end: the next offset to be written
    offsets: list[int] = field(default_factory=list)  # offsets of records present below `upto`


def range_consumer(settings: Mapping[str, str], purpose: str, extra: Mapping[str, str] | None = None) -> Consumer:
    """A consumer for reading ranges by assignment (never joins a group, commits nothing): read-committed
    whatever the settings say, so aborted transactions are never read; it tells the end of a partition. Its
    prefetch is the writers' (a throttled backfill would otherwise hold librdkafka's 64 MiB default, full)."""
    return Consumer(with_logger({
        **PREFETCH, **settings, **(extra or {}),
        "group.id": f"tabletopic-{purpose}-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": "false",
        "enable.partition.eof": "true",
        "isolation.level": "read_committed",
    }))


def read_offsets(
    settings: Mapping[str, str], topic: str, upto: Mapping[int, int] | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> dict[int, PartitionLog]:
    """Offsets of every record in `topic` (per partition, below `upto[p]` when given, else to the log end);
    `on_progress`: told ("topic/partition", offsets read, offsets to read) after each batch."""
    consumer = range_consumer(settings, "audit")
    try:
        metadata = consumer.list_topics(topic, timeout=REQUEST_TIMEOUT_S)
        topic_meta = metadata.topics.get(topic)
        if topic_meta is None or topic_meta.error is not None or not topic_meta.partitions:
            raise AuditError(f"topic {topic!r} not found")
        logs: dict[int, PartitionLog] = {}
        targets: dict[int, int] = {}
        for partition in sorted(topic_meta.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=REQUEST_TIMEOUT_S)
            logs[partition] = PartitionLog(low, high)
            target = high if upto is None else min(high, upto.get(partition, low))
            if target > low:
                targets[partition] = target
        if targets:
            consumer.assign([TopicPartition(topic, p, logs[p].low) for p in targets])
        pending = set(targets)
        while pending:
            for message in consumer.consume(num_messages=10_000, timeout=1.0):
                partition = typing.cast(int, message.partition())
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        pending.discard(partition)
                        continue
                    raise KafkaException(error)
                offset = typing.cast(int, message.offset())
                if offset < targets[partition]:
                    logs[partition].offsets.append(offset)
                if offset >= targets[partition] - 1:
                    pending.discard(partition)
            if on_progress is not None:
                for partition, target in targets.items():
                    seen, low = logs[partition].offsets, logs[partition].low
                    reached = target if partition not in pending else (seen[-1] + 1 if seen else low)
                    on_progress(f"{topic}/{partition}", reached - low, target - low)
        return logs
    finally:
        consumer.close()


def log_bounds(settings: Mapping[str, str], topic: str) -> dict[int, tuple[int, int]]:
    """Per partition of `topic`: the log's first offset and its end."""
    consumer = Consumer(with_logger({**settings, "group.id": f"tabletopic-bounds-{uuid.uuid4().hex[:8]}"}))
    try:
        metadata = consumer.list_topics(topic, timeout=REQUEST_TIMEOUT_S)
        topic_meta = metadata.topics.get(topic)
        if topic_meta is None or topic_meta.error is not None or not topic_meta.partitions:
            return {}
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=REQUEST_TIMEOUT_S)
                for p in sorted(topic_meta.partitions)}
    finally:
        consumer.close()


def offsets_at(settings: Mapping[str, str], topic: str, partitions: list[int], timestamp_ms: int) -> dict[int, int]:
    """Per partition, the first offset whose timestamp is at or after `timestamp_ms` (the log end if none)."""
    consumer = Consumer(with_logger({**settings, "group.id": f"tabletopic-times-{uuid.uuid4().hex[:8]}"}))
    try:
        found = consumer.offsets_for_times([TopicPartition(topic, p, timestamp_ms) for p in partitions],
                                           timeout=REQUEST_TIMEOUT_S)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=REQUEST_TIMEOUT_S)[1]
                for p in partitions}
        return {tp.partition: tp.offset if tp.offset >= 0 else ends[tp.partition] for tp in found}
    finally:
        consumer.close()


def topic_settings(settings: Mapping[str, str], topic: str) -> dict[str, str]:
    """The topic's configuration as the broker reports it (e.g. `cleanup.policy`)."""
    admin = AdminClient(with_logger(dict(settings)))
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    described = admin.describe_configs([resource], request_timeout=REQUEST_TIMEOUT_S)[resource].result(
        timeout=REQUEST_TIMEOUT_S)
    return {name: str(entry.value) for name, entry in described.items()}


def topic_names(settings: Mapping[str, str], timeout_s: float = REQUEST_TIMEOUT_S) -> list[str]:
    """The topics the cluster has (internal ones such as __consumer_offsets left out): for `topic_pattern`."""
    consumer = Consumer(with_logger({**settings, "group.id": f"tabletopic-topics-{uuid.uuid4().hex[:8]}"}))
    try:
        metadata = consumer.list_topics(timeout=timeout_s)
        return sorted(name for name, meta in metadata.topics.items()
                      if meta.error is None and not name.startswith("__"))
    finally:
        consumer.close()


@dataclass
class RangeBatch:
    chunks: list[RecordChunk]
    reached: dict[int, int]  # per partition: where the log ended (an end-of-partition event's offset)
    errors: list[str]
    out_of_range: list[int] = field(default_factory=list)  # partitions whose position the log no longer holds


class RangeReader:
    """Partitions of one topic read from given offsets by manual assignment (no group): for backfill.

    Always read-committed (records of aborted transactions are not records of the topic), whatever
    `isolation.level` the settings say; the caller warns about a different one."""

    def __init__(self, settings: Mapping[str, str], topic: str, starts: Mapping[int, int]) -> None:
        self.topic = topic
        self._consumer = range_consumer(settings, "backfill", {"auto.offset.reset": "error"})
        self._consumer.assign([TopicPartition(topic, p, offset) for p, offset in starts.items()])

    def read(self, batch_size: int, timeout_s: float) -> RangeBatch:
        chunks, failed = group_messages(self._consumer.consume(num_messages=batch_size, timeout=timeout_s))
        reached: dict[int, int] = {}
        errors: list[str] = []
        out_of_range: list[int] = []
        for message in failed:
            error = typing.cast(KafkaError, message.error())
            if error.code() == KafkaError._PARTITION_EOF:
                reached[typing.cast(int, message.partition())] = typing.cast(int, message.offset())
            elif error.code() == KafkaError._AUTO_OFFSET_RESET:
                out_of_range.append(typing.cast(int, message.partition()))
            else:
                errors.append(error.str())
        return RangeBatch(chunks, reached, errors, out_of_range)

    def positions(self, partitions: list[int]) -> dict[int, int]:
        """The next offset each partition will read (past transaction markers and gaps it has passed);
        partitions that have read nothing yet are left out."""
        found = self._consumer.position([TopicPartition(self.topic, p) for p in partitions])
        return {tp.partition: tp.offset for tp in found if tp.offset >= 0}

    def pause(self, partition: int) -> None:
        self._consumer.pause([TopicPartition(self.topic, partition)])

    def close(self) -> None:
        self._consumer.close()
