"""`tabletopic backfill`: read a range of a topic into a table, exactly once and resumable.

The backfill commits under its own offsets key (`tabletopic.offsets.<group>.backfill`), so it and
the live writer never move each other's offsets; a rerun of the same command starts where the
killed one stopped. Where each partition's backfill began is kept in the table's property
`tabletopic.backfill-from.<group>`: a range that begins below it cannot go under the same offsets
(they only go up) and is refused, never taken for done. Partitions are read by manual assignment,
not through the consumer group, read-committed whatever `isolation.level` says.

Into a table the live config writes from this topic (a configured table, a `topic_pattern` table,
a route target or a routed default table), a range must lie below what the live writer holds and
below where its rows (and dead letters) begin; while the live writer has not committed a
partition, where it starts is unknown, so a range of it is refused (use `--into` a new table, or
wait for its first commit). A routed table takes only its share of the records.
"""

from __future__ import annotations

import bisect
import dataclasses
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import structlog
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table

from tabletopic.catalog import reader as table_reader
from tabletopic.catalog.projection import as_recorded
from tabletopic.catalog.tables import load_if_exists
from tabletopic.commit.committer import table_offsets
from tabletopic.commit.offsets import OffsetMap, decode_offsets, encode_offsets
from tabletopic.config import Config, TableConfig
from tabletopic.core import metadata, throttle
from tabletopic.core.backoff import RetryPolicy
from tabletopic.core.records import RecordChunk
from tabletopic.deadletter.rows import dlq_identifier
from tabletopic.decode.avro import WriterSchemas
from tabletopic.exceptions import CommitError, TabletopicError
from tabletopic.kafka.reader import RangeReader
from tabletopic.kafka.registry import SchemaRegistry
from tabletopic.observe.progress import Progress
from tabletopic.resolver import ResolvedTable, resolve
from tabletopic.routing import route_values
from tabletopic.sink import TableSink

log = structlog.get_logger(__name__)

BACKFILL_FROM_PREFIX = "tabletopic.backfill-from."
MARK_ATTEMPTS = 10


def backfill_group(group: str) -> str:
    return f"{group}.backfill"


def backfill_from_key(group: str) -> str:
    return BACKFILL_FROM_PREFIX + group


@dataclass(frozen=True)
class Target:
    """What a backfill writes: the sink's settings, and how the live config feeds the table."""

    spec: TableConfig  # the backfill's own settings: table = --into, or the table
    table: str  # the table whose records these are (its share when routed)
    live: bool  # the live writer writes `table` from this topic, and there is no --into
    source: ResolvedTable | None  # the table as the live config resolves it (None: not configured)

    def share(self, chunk: RecordChunk) -> RecordChunk:
        """The records of `chunk` that go to this table (all of them unless the topic is routed)."""
        if self.source is None or self.source.route is None or chunk.topic not in self.source.topics:
            return chunk
        return chunk.select(self.source.share(route_values(chunk.values, self.source.route.field)))

    @property
    def routed(self) -> bool:
        return self.source is not None and self.source.route is not None and self.spec.topic in self.source.topics


def backfill_target(config: Config, topic: str, table: str, into: str | None) -> Target:
    """The table as the live config knows it (a pattern table, route target, or routed default
    included), and whether the live writer writes it from `topic`."""
    source = resolve(config, [topic]).table(table)
    base = source.spec if source is not None else TableConfig(table=table, topic=topic)
    # A backfill reads a range once and has no halt to wait out: a dead-letter rate limit would abort it.
    spec = dataclasses.replace(base, table=into or table, topic=topic, topics=[], topic_pattern=None,
                               route_field=None, route_tables={}, max_dead_letters_per_minute=None)
    live = source is not None and topic in source.topics and not into
    return Target(spec, table, live, source)


@dataclass
class PartitionPlan:
    partition: int
    start: int  # first offset to read (after resuming)
    end: int  # offset to stop before
    begins: int | None = None  # a new range: where it begins (recorded before its first commit)

    @property
    def records(self) -> int:
        return max(0, self.end - self.start)


@dataclass
class Plan:
    topic: str
    table: str
    partitions: list[PartitionPlan] = field(default_factory=list)

    def lines(self) -> list[str]:
        rows = [f"{self.topic}/{p.partition}: offsets {p.start}..{p.end - 1} ({p.records} records)"
                for p in self.partitions]
        return [*rows, f"total: {sum(p.records for p in self.partitions)} records into {self.table}"]


class RefusedRange(TabletopicError):
    """A backfill range the table may already hold, or that would be written twice."""


def resume_point(topic: str, table: str, partition: int, start: int, end: int, done: int | None,
                 began: int | None) -> PartitionPlan:
    """Where a range `start..end-1` of one partition starts, given the backfill offsets (`done`: the
    next offset of the backfill that reached furthest, `began`: where that one began). Pure.

    A range that begins below `began` is not this backfill's to resume, and backfill offsets only go
    up: refused, never planned as already done."""
    if start >= end:
        return PartitionPlan(partition, start, start)
    if done is None or done < start:
        return PartitionPlan(partition, start, end, begins=start)
    if began is None or began > start:
        where = "an unknown offset" if began is None else f"offset {began}"
        raise RefusedRange(
            f"{topic}/{partition}: offsets {start}..{end - 1} begin below {where}, where an earlier backfill "
            f"into {table} began (it reached {done}); backfill offsets only go up, so this range can neither "
            f"resume that one nor be added under it. Backfill it --into a new table, or give a range from "
            f"{done} on")
    return PartitionPlan(partition, min(done, end), end)


def check_live(topic: str, table: str, partition: int, start: int, end: int, live_next: int | None,
               first_live: int | None) -> None:
    """Refuse a range the live writer of `table` holds or will read. Pure.

    `live_next`: the live writer's next offset; `first_live`: the lowest offset at or past `start`
    of a row or dead letter the table holds (the live writer's first)."""
    if start >= end:
        return
    if live_next is None:
        raise RefusedRange(
            f"{topic}/{partition}: the live writer of {table} has not committed this partition yet, so where it "
            f"starts is not known (consumer.start: earliest reads it from the log start, latest from the log end "
            f"as it is assigned) and any range may be written twice; wait for its first commit of {topic}/"
            f"{partition} (then a backfill fills below where it began), or use --into a new table")
    if first_live is not None and end > first_live:
        raise RefusedRange(
            f"{topic}/{partition}: offsets {start}..{end - 1} reach {first_live}, where the rows "
            f"{table} already holds begin; a backfill may only fill the range below it (use --to-offset "
            f"{first_live}, or --into a new table)")
    if end > live_next:
        raise RefusedRange(
            f"{topic}/{partition}: offsets {start}..{end - 1} reach {live_next}, where the live writer of "
            f"{table} goes on reading; a backfill may only fill the range below what it holds (use "
            f"--to-offset, or --into a new table)")


def plan_backfill(
    catalog: Catalog, config: Config, topic: str, target: Target, starts: Mapping[int, int],
    ends: Mapping[int, int],
) -> Plan:
    """Per partition, where to start (resuming a killed run) and stop; refuses ranges the table may hold."""
    table = target.spec.table
    existing = load_if_exists(catalog, table)
    group = backfill_group(config.group_id)
    done = table_offsets(existing, group) if existing is not None else {}
    began = _began(existing, group) if existing is not None else {}
    unknown_start = [p for p in starts if done.get((topic, p), -1) >= starts[p] and (topic, p) not in began]
    if unknown_start and existing is not None:  # a backfill of an older version: its own rows tell
        began = {**_lowest_rows_below(existing, topic, {p: done[(topic, p)] for p in unknown_start}), **began}
    plan = Plan(topic, table)
    for partition in sorted(starts):
        plan.partitions.append(resume_point(topic, table, partition, starts[partition], ends[partition],
                                            done.get((topic, partition)), began.get((topic, partition))))
    if target.live:
        live_next = table_offsets(existing, config.group_id) if existing is not None else {}
        resumed = {p.partition: p.start for p in plan.partitions}
        first_live = _first_live_offsets(catalog, table, existing, topic, resumed, group) if existing else {}
        for p in plan.partitions:
            check_live(topic, table, p.partition, p.start, p.end, live_next.get((topic, p.partition)),
                       first_live.get(p.partition))
    return plan


def _began(table: Table, group: str) -> OffsetMap:
    text = table.metadata.properties.get(backfill_from_key(group))
    return decode_offsets(text) if text else {}


def mark_began(catalog: Catalog, identifier: str, group: str, began: OffsetMap) -> None:
    """Record where new backfill ranges begin, before their first commit (a table property: it
    outlives snapshot expiry)."""
    for _ in range(MARK_ATTEMPTS):
        table = catalog.load_table(identifier)
        merged = {**_began(table, group), **began}
        try:
            with table.transaction() as transaction:
                transaction.set_properties({backfill_from_key(group): encode_offsets(merged)})
            return
        except CommitFailedException:
            continue
    raise CommitError(f"{identifier}: could not record where the backfill begins after {MARK_ATTEMPTS} attempts")


def _offset_rows(table: Table, topic: str) -> pa.Table | None:
    """(partition, offset) of every row of `topic`; None when the table has no such columns."""
    names = {f.name for f in table.schema().fields}
    if not {metadata.TOPIC, metadata.PARTITION, metadata.OFFSET} <= names:
        return None
    return table_reader.read(table, columns=(metadata.PARTITION, metadata.OFFSET),
                             row_filter=f"{metadata.TOPIC} == '{topic}'")


def _lowest_offsets(rows: pa.Table, floor: Mapping[int, int],
                    below: Mapping[int, int] | None = None) -> dict[int, int]:
    """The lowest offset per partition among rows at or past `floor[p]` (and below `below[p]`)."""
    partitions = rows[metadata.PARTITION].to_pylist()
    keep = pc.greater_equal(rows[metadata.OFFSET], pa.array([floor.get(p, 0) for p in partitions], pa.int64()))
    if below is not None:
        under = pc.less(rows[metadata.OFFSET], pa.array([below.get(p, -1) for p in partitions], pa.int64()))
        keep = pc.and_(keep, under)
    rows = rows.filter(keep)
    if rows.num_rows == 0:
        return {}
    grouped = rows.group_by(metadata.PARTITION).aggregate([(metadata.OFFSET, "min")])
    return dict(zip(grouped[metadata.PARTITION].to_pylist(), grouped[f"{metadata.OFFSET}_min"].to_pylist(),
                    strict=True))


def _lowest_rows_below(table: Table, topic: str, below: Mapping[int, int]) -> OffsetMap:
    rows = _offset_rows(table, topic)
    if rows is None or rows.num_rows == 0:
        return {}
    return {(topic, p): n for p, n in _lowest_offsets(rows, {}, below).items()}


def _first_live_offsets(catalog: Catalog, identifier: str, table: Table, topic: str, since: Mapping[int, int],
                        group: str) -> dict[int, int]:
    """The lowest offset per partition among rows and dead letters at or past `since` (where this
    backfill resumes): below it are this backfill's own rows, at or past it the ones it must not reach.
    A dead-letter table may run ahead of its data table (it commits first): its letters below its own
    backfill offsets are this backfill's too."""
    rows = _offset_rows(table, topic)
    if rows is None:
        raise RefusedRange(f"{identifier} has no {metadata.OFFSET} column, so where the live writer's rows begin "
                           f"cannot be told; backfill --into a new table")
    found = _lowest_offsets(rows, since)
    letters_table = load_if_exists(catalog, dlq_identifier(identifier))
    letters = _offset_rows(letters_table, topic) if letters_table is not None else None
    if letters is not None and letters.num_rows:
        own = table_offsets(letters_table, group) if letters_table is not None else {}
        floor = {p: max(n, own.get((topic, p), n)) for p, n in since.items()}
        for p, n in _lowest_offsets(letters, floor).items():
            found[p] = min(n, found.get(p, n))
    return found


def run_backfill(catalog: Catalog, config: Config, target: Target, plan: Plan, plain_progress: bool = False,
                 max_records_per_second: float | None = None) -> int:
    """Read every planned partition to its end, committing as the service does; returns records read.

    A partition is done once the reader's position reaches the planned end: the last offsets of a
    range may hold no record (a transaction marker, a compacted record). Its offsets then cover the
    whole range, padded to its end: a rerun finds nothing left, and the table stands where the range ends.

    Under `max_records_per_second`, a batch is read only once the records taken from the log so far are
    within the rate (so it holds on average, in bursts of up to one batch); commits fall due meanwhile."""
    registry = config.schema_registry
    writer_schemas = WriterSchemas(SchemaRegistry(registry.url, registry.properties)) if registry.url else None
    group = backfill_group(config.group_id)
    spec, differences = as_recorded(catalog, target.spec)  # a rebuilt table's rows are made as it records
    if differences:
        log.warning("table.projection_from_table", table=spec.table, differences=differences)
    sink = TableSink(spec, catalog, group, f"backfill-{uuid.uuid4().hex[:8]}", RetryPolicy(), writer_schemas,
                     routed=target.routed)
    todo = {p.partition: p for p in plan.partitions if p.records > 0}
    if not todo:
        return 0
    isolation = config.kafka.get("isolation.level", "read_committed")
    if isolation != "read_committed":
        log.warning("backfill.isolation_forced", configured=isolation, used="read_committed",
                    reason="records of aborted transactions are not records of the topic")
    to_mark = {(plan.topic, p.partition): p.begins for p in todo.values() if p.begins is not None}
    # Where this run's reading of each partition begins: a range with no record at its end is padded from here.
    sink.committed.update({(plan.topic, p.partition): p.start for p in todo.values()})
    reader = RangeReader(config.kafka, plan.topic, {p.partition: p.start for p in todo.values()})
    labels = {p.partition: f"{plan.topic}/{p.partition}" for p in plan.partitions}
    firsts = {p.partition: p.start for p in plan.partitions}
    progress = Progress("backfill.progress", {labels[p.partition]: p.records for p in plan.partitions},
                        plain=plain_progress, table=plan.table)
    read = 0
    taken = 0  # records taken from the log, routed elsewhere or not: what the throttle holds to its rate
    finished: dict[int, int] = {}  # partition -> the end of its range, reached
    ingested_to = {p.partition: p.start for p in todo.values()}  # past the last record this run took
    pace = throttle.Throttle(max_records_per_second)
    log.info("backfill.starts", table=plan.table, records=sum(p.records for p in todo.values()),
             max_records_per_second=max_records_per_second)
    try:
        while todo:
            wait = pace.wait(taken)
            if wait:  # commits still fall due while throttled
                time.sleep(min(wait, throttle.NAP_S))
                now = time.monotonic()
            else:
                batch = reader.read(config.consumer.batch_size, 1.0)
                for error in batch.errors:
                    log.warning("kafka.error", error=error)
                if batch.out_of_range:  # retention took the range meanwhile: stop, never spin on it
                    raise TabletopicError(f"{plan.topic}/{sorted(set(batch.out_of_range))}: the log no longer holds "
                                          f"the offsets the backfill reads next (retention took them)")
                now = time.monotonic()
                reached: dict[int, int] = dict(batch.reached)
                for chunk in batch.chunks:
                    wanted = todo.get(chunk.partition)
                    if wanted is None:
                        continue
                    # only the planned range: records at or past its end stay unread
                    inside = chunk.head(bisect.bisect_left(chunk.offsets, wanted.end))
                    taken += len(inside)
                    if len(inside):
                        share = target.share(inside)
                        sink.ingest(share, now, (inside.first, inside.last) if target.routed else None)
                        ingested_to[chunk.partition] = inside.last + 1
                        read += len(share)
                    reached[chunk.partition] = max(reached.get(chunk.partition, 0), chunk.last + 1)
                for partition, position in reader.positions(sorted(todo)).items():
                    reached[partition] = max(reached.get(partition, 0), position)
                for partition, position in reached.items():
                    wanted = todo.get(partition)
                    if wanted is None:
                        continue
                    progress.advance(labels[partition], min(position, wanted.end) - firsts[partition])
                    if position >= wanted.end:
                        reader.pause(partition)
                        del todo[partition]
                        finished[partition] = wanted.end
                    elif partition in batch.reached:  # the log's end, and still short of the planned end
                        raise TabletopicError(f"{plan.topic}/{partition}: the log ended at {position}, before "
                                              f"offset {wanted.end}")
            if not todo or sink.is_flush_due(now, config.commit.interval_seconds, config.commit.max_buffer_bytes):
                for partition, end in finished.items():
                    # Only from where this run's own records end (a fenced or replayed flush leaves the table
                    # elsewhere: what lies between is not this run's to claim), never past the range's end.
                    if sink.covered((plan.topic, partition)) == ingested_to[partition]:
                        sink.pass_over((plan.topic, partition), end, now)
                if to_mark and sink.exists():
                    mark_began(catalog, target.spec.table, group, to_mark)
                    to_mark = {}
                outcome = sink.flush()
                if outcome is not None and outcome.committed:
                    log.info("backfill.commit", table=plan.table, offsets={f"{t}/{p}": n
                                                                          for (t, p), n in outcome.committed.items()})
            progress.show()
    finally:
        reader.close()
        progress.close()
    progress.show(final=True)
    return read

