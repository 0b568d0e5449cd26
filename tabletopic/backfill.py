"""`tabletopic backfill`: read a range of a topic into a table, exactly once and resumable.

The backfill commits under its own offsets key (`tabletopic.offsets.<group>.backfill`), so it and
the live writer never move each other's offsets; a rerun of the same command starts where the
killed one stopped. Into the live writer's own table it refuses a range the table may already
hold (at or past the first offset the live writer wrote). Partitions are read by manual
assignment, not through the consumer group.
"""

from __future__ import annotations

import bisect
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import cast

import pyarrow as pa
import pyarrow.compute as pc
import structlog
from confluent_kafka import Consumer, KafkaError, TopicPartition
from pyiceberg.catalog import Catalog
from pyiceberg.table import Table

from tabletopic.catalog.tables import load_if_exists
from tabletopic.commit.committer import table_offsets
from tabletopic.commit.retry import RetryPolicy
from tabletopic.config import Config, TableConfig
from tabletopic.decode import metadata
from tabletopic.decode.avro import WriterSchemas
from tabletopic.exceptions import TabletopicError
from tabletopic.kafka.consumer import group_messages
from tabletopic.kafka.records import RecordChunk
from tabletopic.kafka.registry import SchemaRegistry
from tabletopic.sink import TableSink

log = structlog.get_logger(__name__)

PROGRESS_EVERY_S = 5.0


def backfill_group(group: str) -> str:
    return f"{group}.backfill"


@dataclass
class PartitionPlan:
    partition: int
    start: int  # first offset to read (after resuming)
    end: int  # offset to stop before

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
    """A backfill range the table may already hold."""


def plan_backfill(
    catalog: Catalog, config: Config, topic: str, table: str, starts: Mapping[int, int], ends: Mapping[int, int],
    live_table: bool,
) -> Plan:
    """Per partition, where to start (resuming a killed run) and stop; refuses ranges the table may hold."""
    existing = load_if_exists(catalog, table)
    done = table_offsets(existing, backfill_group(config.group_id)) if existing is not None else {}
    plan = Plan(topic, table)
    resumed_at = {p: max(starts[p], done.get((topic, p)) or starts[p]) for p in starts}
    first_live = _first_live_offsets(existing, topic, resumed_at) if (existing is not None and live_table) else {}
    live_next = table_offsets(existing, config.group_id) if (existing is not None and live_table) else {}
    for partition in sorted(starts):
        start, end = starts[partition], ends[partition]
        if partition in first_live and end > first_live[partition]:
            raise RefusedRange(
                f"{topic}/{partition}: offsets {start}..{end - 1} reach {first_live[partition]}, where the rows "
                f"{table} already holds begin; a backfill may only fill the range below it (use --to-offset "
                f"{first_live[partition]}, or --into a new table)")
        live = live_next.get((topic, partition))
        if live is not None and end > live:
            raise RefusedRange(
                f"{topic}/{partition}: offsets {start}..{end - 1} reach {live}, where the live writer of "
                f"{table} goes on reading; a backfill may only fill the range below what it holds (use "
                f"--to-offset, or --into a new table)")
        resumed = done.get((topic, partition))
        plan.partitions.append(PartitionPlan(partition, max(start, resumed or start), end))
    return plan


def _first_live_offsets(table: Table, topic: str, since: Mapping[int, int]) -> dict[int, int]:
    """The lowest offset per partition among rows at or past `since` (where this backfill resumes):
    below it are this backfill's own rows, at or past it the ones it must not reach."""
    rows = table.scan(row_filter=f"{metadata.TOPIC} == '{topic}'",
                      selected_fields=(metadata.PARTITION, metadata.OFFSET)).to_arrow()
    if rows.num_rows:
        floor = pa.array([since.get(p, 0) for p in rows[metadata.PARTITION].to_pylist()], pa.int64())
        rows = rows.filter(pc.greater_equal(rows[metadata.OFFSET], floor))
    if rows.num_rows == 0:
        return {}
    grouped = rows.group_by(metadata.PARTITION).aggregate([(metadata.OFFSET, "min")])
    return dict(zip(grouped[metadata.PARTITION].to_pylist(), grouped[f"{metadata.OFFSET}_min"].to_pylist(),
                    strict=True))


def run_backfill(catalog: Catalog, config: Config, spec: TableConfig, plan: Plan, plain_progress: bool = False) -> int:
    """Read every planned partition to its end, committing as the service does; returns records read."""
    registry = config.schema_registry
    writer_schemas = WriterSchemas(SchemaRegistry(registry.url, registry.properties)) if registry.url else None
    group = backfill_group(config.group_id)
    sink = TableSink(spec, catalog, group, f"backfill-{uuid.uuid4().hex[:8]}", RetryPolicy(), writer_schemas)
    todo = {p.partition: p for p in plan.partitions if p.records > 0}
    if not todo:
        return 0
    consumer = Consumer({**config.kafka, "group.id": f"tabletopic-backfill-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": "false", "enable.partition.eof": "true",
                         "auto.offset.reset": "error"})
    consumer.assign([TopicPartition(plan.topic, p.partition, p.start) for p in todo.values()])
    progress = Progress(plan, plain=plain_progress)
    read = 0
    try:
        while todo:
            grouped, failed = group_messages(consumer.consume(num_messages=config.consumer.batch_size, timeout=1.0))
            ended: set[int] = set()
            for message in failed:
                error = cast(KafkaError, message.error())
                if error.code() == KafkaError._PARTITION_EOF:
                    ended.add(cast(int, message.partition()))
                else:
                    log.warning("kafka.error", error=error.str())
            chunks: dict[int, RecordChunk] = {}
            for chunk in grouped:
                if chunk.partition in todo:  # only the planned range: records at or past its end stay unread
                    inside = chunk.head(bisect.bisect_left(chunk.offsets, todo[chunk.partition].end))
                    if len(inside):
                        chunks[chunk.partition] = inside
            now = time.monotonic()
            for partition, chunk in chunks.items():
                sink.ingest(chunk, now)
                read += len(chunk)
                progress.advance(partition, chunk.last + 1)
                if chunk.last + 1 >= todo[partition].end:
                    consumer.pause([TopicPartition(plan.topic, partition)])
                    del todo[partition]
            for partition in ended & set(todo):  # the log's end, and still short of the planned end
                raise TabletopicError(f"{plan.topic}/{partition}: the log ended at "
                                      f"{progress.position[partition]}, before offset {todo[partition].end}")
            if not todo or sink.is_flush_due(now, config.commit.interval_seconds, config.commit.max_buffer_bytes):
                outcome = sink.flush()
                if outcome is not None and outcome.committed:
                    log.info("backfill.commit", table=plan.table, offsets={f"{t}/{p}": n
                                                                          for (t, p), n in outcome.committed.items()})
            progress.show()
    finally:
        consumer.close()
    progress.show(final=True)
    return read


class Progress:
    """A line per partition on a terminal, redrawn; a log line every few seconds otherwise."""

    def __init__(self, plan: Plan, plain: bool = False) -> None:
        self.plan = plan
        self.started = time.monotonic()
        self.position = {p.partition: p.start for p in plan.partitions}
        self._last_shown = 0.0
        self._tty = sys.stderr.isatty() and not plain  # a pool's children log, they do not draw
        self._drawn = 0

    def advance(self, partition: int, position: int) -> None:
        self.position[partition] = position

    def show(self, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._last_shown < (0.5 if self._tty else PROGRESS_EVERY_S):
            return
        self._last_shown = now
        elapsed = max(now - self.started, 1e-6)
        lines = []
        for p in self.plan.partitions:
            done = self.position[p.partition] - p.start
            rate = done / elapsed
            left = p.end - self.position[p.partition]
            lines.append((p.partition, done, p.records, rate, "-" if rate <= 0 else f"{left / rate:.0f}s"))
        if self._tty:
            if self._drawn:
                sys.stderr.write(f"\x1b[{self._drawn}F")  # back to the first line of the last drawing
            for n, d, t, r, e in lines:
                bar = "#" * int(20 * d / t) if t else "#" * 20
                sys.stderr.write(f"\x1b[2K{self.plan.topic}/{n} [{bar:<20}] {d}/{t} records, {r:.0f}/s, ETA {e}\n")
            sys.stderr.flush()
            self._drawn = len(lines)
        else:
            log.info("backfill.progress", table=self.plan.table, final=final,
                     partitions={f"{self.plan.topic}/{n}": {"done": d, "of": t, "per_s": round(r), "eta": e}
                                 for n, d, t, r, e in lines})
