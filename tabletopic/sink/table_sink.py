"""One table's way from records to snapshots: intake, then the error policy, then the writer."""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Callable, Iterable

import structlog
from pyiceberg.catalog import Catalog

from tabletopic.catalog.projection import hash_of
from tabletopic.commit.buffer import TableBuffer
from tabletopic.commit.committer import CommitOutcome, Committer
from tabletopic.commit.offsets import OffsetMap, TopicPartition, passed_without_records
from tabletopic.config import TableConfig
from tabletopic.core.backoff import RetryPolicy
from tabletopic.core.records import RecordChunk
from tabletopic.deadletter.bounds import batch_summary
from tabletopic.deadletter.flood import DeadLetterRate
from tabletopic.deadletter.topic import DeadLetterTopic
from tabletopic.decode.avro import WriterSchemas
from tabletopic.sink.error_policy import FloodLimit, Verdict, decide
from tabletopic.sink.intake import Intake, Intaken
from tabletopic.sink.keyed_intake import KeyedIntake
from tabletopic.sink.table_shape import TableShape
from tabletopic.sink.writer import TableWriter
from tabletopic.upsert.payload import with_flag

log = structlog.get_logger(__name__)


class TableSink:
    def __init__(
        self,
        spec: TableConfig,
        catalog: Catalog,
        group: str,
        writer_id: str,
        retry: RetryPolicy,
        writer_schemas: WriterSchemas | None = None,
        dead_letter_topic: DeadLetterTopic | None = None,
        routed: bool = False,
        clock: Callable[[], float] = time.monotonic,
        location: str | None = None,
    ) -> None:
        """`location`: where the table, if this sink creates it, puts its files (its dead letters beside it);
        default: the catalog's choice."""
        self.spec = spec
        # One of several tables a topic's records are split among: each sees every offset range,
        # and trims what it already holds instead of fencing (a fence would re-seek the siblings too).
        self.routed = routed
        self.identifier = spec.table
        upsert = spec.upsert
        self.writer = TableWriter(catalog, spec.table, group, writer_id, retry, routed, dead_letter_topic, clock,
                                  upsert=upsert is not None,
                                  dead_letter_location=None if location is None else f"{location}__dlq")
        self.writer.committer.projection = hash_of(spec)
        self.shape = TableShape(spec, catalog, writer_schemas, on_change=self.writer.conform, location=location)
        self.intake: Intake | KeyedIntake = Intake(spec, self.shape) if upsert is None \
            else KeyedIntake(spec, self.shape, upsert)
        self.bad_records: Counter[str] = Counter()  # by reason code, since start
        limit = spec.max_dead_letters_per_minute
        self._dead_letter_rate = DeadLetterRate(limit) if spec.errors == "dlq" and limit is not None else None

    # --- records -------------------------------------------------------------------------------

    def ingest(self, chunk: RecordChunk, now: float, covers: tuple[int, int] | None = None) -> None:
        """Decode and buffer a chunk; bad records go the way of the table's error policy
        (`fail`: the good ones before the first bad one are buffered, then RecordError).
        `covers`: the offset range the chunk stands for (a routed table's share of a bigger one)."""
        tp = (chunk.topic, chunk.partition)
        if covers is not None and not len(chunk):
            if self.shape.schema is not None:  # nothing for this table, but the range is consumed
                self.buffer.add(tp, *covers, self.shape.schema.empty_table(), now)
            return
        taken = self.intake.read(chunk)
        first, last = covers or (chunk.first, chunk.last)
        if taken.bad:
            verdict = decide(self.spec.errors, self.identifier, chunk, taken.bad, last, self._flood_limit(now))
            self._act_on(verdict, chunk, taken, first, now)
        if self.shape.schema is None:
            # An upsert table none of whose records so far had a key to type its key columns: there is no
            # table to hold the offsets yet; the records are read again after a restart, and their dead
            # letters kept once (the dead-letter table trims by offset).
            return
        self.buffer.add(tp, first, last, taken.rows, now)

    def covered(self, tp: TopicPartition) -> int | None:
        """Where what the table holds and buffers of `tp` ends (the next offset), if known."""
        held = self.buffer.partitions.get(tp)
        return held.last + 1 if held is not None else self.committed.get(tp)

    def pass_over(self, tp: TopicPartition, position: int, now: float) -> None:
        """The consumer stands at `position` in `tp`, past everything it delivered: offsets between the end
        of what the table holds or buffers and there held no record (commit/offsets.py
        `passed_without_records`) and join the buffered range, so the next commit's offset reaches
        `position`. Nothing is claimed while where the table stands is unknown."""
        gap = passed_without_records(self.covered(tp), position)
        if gap is None or self.shape.schema is None:
            return
        schema = with_flag(self.shape.schema) if self.writer.upsert else self.shape.schema
        self.buffer.add(tp, gap.first, gap.last, schema.empty_table(), now)

    def _flood_limit(self, now: float) -> FloodLimit | None:
        rate = self._dead_letter_rate
        if rate is None or rate.per_minute is None:
            return None
        return FloodLimit(rate.per_minute, rate.in_window(now))

    def _act_on(self, verdict: Verdict, chunk: RecordChunk, taken: Intaken, first: int, now: float) -> None:
        """Count, log and buffer the verdict's dead letters; if it stops the table, buffer the records
        before the stop and raise it."""
        if self._dead_letter_rate is not None:
            self._dead_letter_rate.spend(len(verdict.dead_letters), now)
        for event, refused in (("record.dead_letter", verdict.dead_letters), ("record.skipped", verdict.skipped)):
            if refused:
                self.bad_records.update(str(b.code) for b in refused)
                log.warning(event, table=self.identifier, **batch_summary(chunk, refused))
        if verdict.dead_letters:
            self.writer.add_dead_letters(chunk, verdict.dead_letters, first, verdict.last, now)
        if verdict.stop is not None:
            if verdict.stop_at > 0:  # the records before it are taken: the table reads again from it
                kept = bisect.bisect_left(taken.good, verdict.stop_at)
                self.buffer.add((chunk.topic, chunk.partition), first, verdict.last, taken.rows.slice(0, kept), now)
            raise verdict.stop

    # --- the writer's ----------------------------------------------------------------------------

    def exists(self) -> bool:
        return self.shape.exists()

    def start_offsets(self, tps: Iterable[TopicPartition]) -> OffsetMap:
        """The table's next offsets for these partitions (absent: the table holds none)."""
        return self.writer.start_offsets(tps)

    def is_flush_due(self, now: float, interval_s: float, max_bytes: int) -> bool:
        return self.writer.is_flush_due(now, interval_s, max_bytes)

    def flush(self, tps: Iterable[TopicPartition] | None = None) -> CommitOutcome | None:
        """Commit the dead letters, then the rows (writer.py); on CommitError both stay buffered."""
        return self.writer.flush(tps)

    def drop(self, tps: Iterable[TopicPartition]) -> None:
        self.writer.drop(tps)

    @property
    def buffered_bytes(self) -> int:
        return self.writer.buffered_bytes

    @property
    def buffer(self) -> TableBuffer:
        return self.writer.buffer

    @property
    def dead_letters(self) -> TableBuffer:
        return self.writer.dead_letters

    @property
    def committer(self) -> Committer:
        return self.writer.committer

    @property
    def dead_letter_committer(self) -> Committer:
        return self.writer.dead_letter_committer

    @property
    def committed(self) -> OffsetMap:  # what the table holds, as this worker last saw it
        return self.writer.committed

    @committed.setter
    def committed(self, value: OffsetMap) -> None:
        self.writer.committed = value

    @property
    def newest_record_ms(self) -> int | None:
        return self.writer.newest_record_ms

    @newest_record_ms.setter
    def newest_record_ms(self, value: int | None) -> None:
        self.writer.newest_record_ms = value
