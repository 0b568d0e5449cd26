"""A consumer-group member that hands back RecordChunks and lets the table decide where to start."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

import structlog
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from tabletopic.core.records import RecordChunk
from tabletopic.exceptions import ConfigError
from tabletopic.kafka.client_logs import with_logger
from tabletopic.kafka.interface import TP, RebalanceHandlers

log = structlog.get_logger(__name__)


# Settings the protocol depends on: Kafka's own offsets are informational only.
_FORCED = {
    "enable.auto.commit": "false",
    "enable.auto.offset.store": "false",
    # A position out of the log's range is an error to report, never a silent jump to its start or end.
    "auto.offset.reset": "error",
    # Records of aborted transactions are not records of the topic: they must never reach a table.
    "isolation.level": "read_committed",
}
# Consumer-only settings, left out of the admin client that asks for topic ids (it would warn about each).
_CONSUMER_ONLY = ("group.", "fetch.", "queued.", "session.timeout.ms", "heartbeat.interval.ms",
                  "partition.assignment.strategy", "coordinator.query.interval.ms", "max.poll.interval.ms",
                  "enable.auto.commit", "auto.commit.interval.ms", "enable.auto.offset.store", "auto.offset.reset",
                  "enable.partition.eof", "isolation.level", "max.partition.fetch.bytes", "check.crcs",
                  "offset.store.method")
PREFETCH = {
    # The prefetch queue (one for all partitions of a group member). librdkafka holds ~2.5 times
    # its size (message headers, decompressed message sets): 16 MiB took ~100 MiB of a writer's
    # memory, 4 MiB ~50, and consumed as fast (~500k records/s of ~190 B alone on a shared core).
    # Below one 10k-record poll batch (2 MiB) it stalled a consumer between polls (bench/RESULTS.md).
    "queued.max.messages.kbytes": "4096",
    # A partition whose prefetch is over that limit stops fetching for this long: librdkafka's
    # 1000 ms default left a busy member idle for most of each second (bench/RESULTS.md).
    "fetch.queue.backoff.ms": "10",
}
_DEFAULTS = {
    "partition.assignment.strategy": "cooperative-sticky",
    "enable.partition.eof": "false",
    **PREFETCH,
}


class GroupConsumer:
    """The broker's side of GroupMember (interface.py)."""

    def __init__(self, settings: Mapping[str, str], group_id: str, start: str = "earliest") -> None:
        for name, forced in _FORCED.items():
            if name in settings and str(settings[name]).lower() != forced:
                log.warning("kafka.setting_overridden", setting=name, configured=settings[name], used=forced,
                            why="the writer's exactly-once protocol depends on it")
        conf = with_logger({**_DEFAULTS, **settings, **_FORCED, "group.id": group_id, "error_cb": self._on_error})
        self._admin_conf = {k: v for k, v in settings.items() if not k.startswith(_CONSUMER_ONLY)}
        self._admin: AdminClient | None = None
        self._start = OFFSET_BEGINNING if start == "earliest" else OFFSET_END
        try:
            self._consumer = Consumer(conf)
        except KafkaException as exc:
            raise ConfigError("kafka", str(exc.args[0].str() if exc.args else exc)) from None
        self.assigned: set[TP] = set()
        # Partitions that handed over a record since their assignment, seek or last error: only their
        # position is trusted (`consumed_to`).
        self._delivered: set[TP] = set()
        self._paused: set[TP] = set()  # librdkafka cannot be asked; a partition assigned afresh is paused again
        self.out_of_range: set[TP] = set()  # partitions whose position the log no longer holds; the owner clears it
        self.authentication_error: str | None = None  # wrong credentials: retrying will not fix them

    def _on_error(self, error: KafkaError) -> None:
        """librdkafka retries by itself; an unreachable broker is worth a line, not a stop."""
        log.warning("kafka.error", code=error.name(), error=error.str(), fatal=error.fatal())
        if error.code() == KafkaError._AUTHENTICATION:
            self.authentication_error = error.str()

    def subscribe(self, topics: list[str], handlers: RebalanceHandlers) -> None:
        def on_assign(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            tps = [(p.topic, p.partition) for p in partitions]
            starts = handlers.start_offsets(tps)
            for p in partitions:
                p.offset = starts.get((p.topic, p.partition), self._start)
            log.info("kafka.assigned", partitions={f"{p.topic}/{p.partition}": p.offset for p in partitions})
            self.assigned.update(tps)
            self._delivered.difference_update(tps)
            consumer.incremental_assign(partitions)
            held = [TopicPartition(t, p) for t, p in handlers.hold(tps)]
            if held:  # before the first fetch
                consumer.pause(held)
                self._paused.update((p.topic, p.partition) for p in held)

        def release(consumer: Consumer, partitions: list[TopicPartition], lost: bool) -> None:
            tps = [(p.topic, p.partition) for p in partitions]
            (log.warning if lost else log.info)(
                "kafka.lost" if lost else "kafka.revoked", partitions=[f"{t}/{p}" for t, p in tps]
            )
            try:
                (handlers.lost if lost else handlers.revoked)(tps)
            finally:
                self.assigned.difference_update(tps)
                self._delivered.difference_update(tps)
                self._paused.difference_update(tps)
                consumer.incremental_unassign(partitions)

        def on_revoke(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            release(consumer, partitions, lost=False)

        def on_lost(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            release(consumer, partitions, lost=True)

        try:
            self._consumer.subscribe(topics, on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
        except KafkaException as exc:
            # librdkafka's own regex dialect (no inline flags such as (?i)) decides what a pattern may be.
            raise ConfigError("tables[].topic / topic_pattern", f"subscription {topics} refused: {exc}") from None

    def poll(self, max_records: int, timeout_s: float) -> list[RecordChunk]:
        """Up to `max_records`, grouped into one chunk per topic-partition, in offset order."""
        messages = self._consumer.consume(num_messages=max_records, timeout=timeout_s)
        chunks, failed = group_messages(messages)
        self._delivered.update((chunk.topic, chunk.partition) for chunk in chunks)
        for message in failed:
            error = cast(KafkaError, message.error())
            if message.topic() is not None and message.partition() is not None:
                # librdkafka before 2.13.2 moved the position past a fetch error's offset: never trust it then.
                self._delivered.discard((cast(str, message.topic()), cast(int, message.partition())))
            if error.code() == KafkaError._PARTITION_EOF:
                continue
            if error.fatal():
                raise KafkaException(error)
            if error.code() == KafkaError._AUTO_OFFSET_RESET:
                # auto.offset.reset=error: the position left the log (retention, recreation).
                self.out_of_range.add((cast(str, message.topic()), cast(int, message.partition())))
            log.warning("kafka.error", error=error.str())
        return chunks

    def pause(self, tps: list[TP]) -> None:
        owned = [TopicPartition(t, p) for t, p in tps if (t, p) in self.assigned]
        if owned:
            self._consumer.pause(owned)
            self._paused.update((tp.topic, tp.partition) for tp in owned)

    def resume(self, tps: list[TP]) -> None:
        owned = [TopicPartition(t, p) for t, p in tps if (t, p) in self.assigned]
        if owned:
            self._consumer.resume(owned)
            self._paused.difference_update((tp.topic, tp.partition) for tp in owned)

    def seek(self, tp: TP, offset: int) -> None:
        """Read `tp` from `offset` next. The caller has dropped what it held past there, so a seek that
        fails must not leave the position where it was: the partition is then assigned afresh at `offset`."""
        if tp not in self.assigned:
            return
        self._delivered.discard(tp)
        try:
            self._consumer.seek(TopicPartition(tp[0], tp[1], offset))
        except KafkaException as exc:
            log.warning("kafka.seek_failed", partition=f"{tp[0]}/{tp[1]}", offset=offset, error=str(exc))
            self._assign_afresh(tp, offset)

    def _assign_afresh(self, tp: TP, offset: int) -> None:
        # librdkafka resets the position of an unassigned partition later, on another thread.
        self._delivered.discard(tp)
        self._consumer.incremental_unassign([TopicPartition(tp[0], tp[1])])
        self._consumer.incremental_assign([TopicPartition(tp[0], tp[1], offset)])
        if tp in self._paused:  # a partition assigned afresh starts unpaused
            self._consumer.pause([TopicPartition(tp[0], tp[1])])

    def reposition(self, tp: TP, offset: int | None) -> None:
        """Seek, or, for a partition in an error state (its position left the log), assign it afresh there.
        `offset` None: where a partition the table has not seen starts (`consumer.start`)."""
        if tp not in self.assigned:
            return
        if offset is None:
            offset = self._start
        self._delivered.discard(tp)
        try:
            self._consumer.seek(TopicPartition(tp[0], tp[1], offset))
        except KafkaException:
            self._assign_afresh(tp, offset)
        log.info("kafka.repositioned", partition=f"{tp[0]}/{tp[1]}", offset=offset)

    def consumed_to(self, tps: list[TP]) -> dict[TP, int]:
        """librdkafka's position: moved by each record handed over and each control record (transaction
        marker) met. Only for partitions that handed over a record since their assignment, their last seek
        and their last error: librdkafka resets a position asynchronously after an unassignment, and its
        versions before 2.13.2 moved it past the offset of a fetch error (a record never handed over)."""
        tps = [tp for tp in tps if tp in self._delivered]
        if not tps:
            return {}
        found = self._consumer.position([TopicPartition(t, p) for t, p in tps])
        return {(tp.topic, tp.partition): int(tp.offset) for tp in found if tp.offset >= 0 and tp.error is None}

    def topic_ids(self, topics: list[str], timeout_s: float = 10.0) -> dict[str, str]:
        """Each topic's id as the broker has it now (a topic deleted and created again has a new one).
        A topic the broker does not describe (gone, or an old broker) is left out."""
        if not topics:
            return {}
        if self._admin is None:
            self._admin = AdminClient(with_logger(dict(self._admin_conf)))
        return describe_topic_ids(self._admin, topics, timeout_s)

    def watermarks(self, tp: TP) -> tuple[int, int]:
        """The log's first offset and its end (the next offset to be written)."""
        low, high = self._consumer.get_watermark_offsets(TopicPartition(tp[0], tp[1]), timeout=10, cached=False)
        return int(low), int(high)

    def log_end(self, tp: TP) -> int | None:
        """The log end as of the last record fetched (no broker round trip), else asked of the broker
        (a partition assigned at its end fetches no record); None if the broker does not answer."""
        partition = TopicPartition(tp[0], tp[1])
        _, high = self._consumer.get_watermark_offsets(partition, cached=True)
        if high >= 0:
            return int(high)
        try:
            _, high = self._consumer.get_watermark_offsets(partition, timeout=1, cached=False)
        except KafkaException:
            return None
        return int(high) if high >= 0 else None

    def commit_group_offsets(self, offsets: Mapping[TP, int], wait: bool = False) -> None:
        """Record the table's offsets in the group too, for lag tools; never read back by tabletopic."""
        owned = [TopicPartition(t, p, o) for (t, p), o in offsets.items() if (t, p) in self.assigned]
        if not owned:
            return
        try:
            if wait:
                self._consumer.commit(offsets=owned, asynchronous=False)
            else:
                self._consumer.commit(offsets=owned, asynchronous=True)
        except KafkaException as exc:
            log.info("kafka.group_commit_skipped", error=str(exc))

    def close(self) -> None:
        """Leave the group (runs the revoke callback first)."""
        self._consumer.close()


NO_TOPIC_ID = "AAAAAAAAAAAAAAAAAAAAAA"  # the all-zero id: the broker has none for the topic


def describe_topic_ids(admin: AdminClient, topics: list[str], timeout_s: float = 10.0) -> dict[str, str]:
    ids = {}
    futures = admin.describe_topics(TopicCollection(sorted(set(topics))), request_timeout=timeout_s)
    for topic, future in futures.items():
        try:
            description = future.result(timeout=timeout_s)
        except (KafkaException, TimeoutError) as exc:
            log.warning("kafka.topic_not_described", topic=topic, error=str(exc))
            continue
        topic_id = str(description.topic_id) if description.topic_id is not None else None
        if topic_id and topic_id != NO_TOPIC_ID:
            ids[topic] = topic_id
    return ids


def topic_ids(settings: Mapping[str, str], topics: list[str]) -> dict[str, str]:
    """Topic ids for the offsets commands: an admin client of its own."""
    admin = AdminClient(with_logger({k: v for k, v in settings.items() if not k.startswith(_CONSUMER_ONLY)}))
    return describe_topic_ids(admin, topics)


def group_messages(messages: list[Message]) -> tuple[list[RecordChunk], list[Message]]:
    """One chunk per topic-partition, in offset order, and the messages that carry an error.

    The hot path of every record: a few C calls each, appends bound once per run of one partition.
    """
    chunks: dict[TP, RecordChunk] = {}
    failed: list[Message] = []
    current: Any = None
    offsets_add: Callable[[Any], None] = failed.append  # each rebound at the first record
    keys_add = values_add = times_add = headers_add = offsets_add
    for message in messages:
        if message.error() is not None:
            failed.append(message)
            continue
        tp: Any = (message.topic(), message.partition())
        if tp != current:
            chunk = chunks.get(tp)
            if chunk is None:
                chunk = chunks[tp] = RecordChunk(tp[0], tp[1])
            current = tp
            offsets_add, keys_add, values_add = chunk.offsets.append, chunk.keys.append, chunk.values.append
            times_add, headers_add = chunk.timestamps_ms.append, chunk.headers.append
        offsets_add(message.offset())
        keys_add(message.key())
        values_add(message.value())
        times_add(message.timestamp()[1])
        headers_add(message.headers())
    for chunk in chunks.values():
        if -1 in chunk.timestamps_ms:  # librdkafka's "no timestamp"
            chunk.timestamps_ms = [None if t == -1 else t for t in chunk.timestamps_ms]
    return list(chunks.values()), failed
