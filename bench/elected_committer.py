"""A prototype of the alternative commit design, for measurement only: one committer per table.

N worker processes consume in one group, decode and buffer as the service does, and at each
commit interval write their Parquet files and hand (files, offset ranges) to the committer; the
committer (one process, as an elected worker would be) judges every range against the table
and appends all of an interval's files in one snapshot. The channel is a multiprocessing queue,
a lower bound on what a real control topic would cost. Membership is stable during a run, so
the prototype leaves out what a real design needs on a rebalance (fencing files of an old
generation, since one file holds rows of several partitions).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import queue
import time
import uuid
from dataclasses import dataclass
from multiprocessing.synchronize import Event
from pathlib import Path

import pyarrow as pa
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.manifest import DataFile

from tabletopic.catalog.loader import open_catalog
from tabletopic.commit.committer import append_files, table_offsets, write_data_files
from tabletopic.commit.offsets import (
    COMMIT_ID_KEY,
    WRITER_ID_KEY,
    OffsetRange,
    TopicPartition,
    Verdict,
    encode_offsets,
    judge,
    merge_offsets,
    offsets_key,
)
from tabletopic.config import load_config
from tabletopic.core.backoff import RetryPolicy
from tabletopic.kafka.consumer import GroupConsumer, RebalanceHandlers
from tabletopic.service import writer_id
from tabletopic.sink import TableSink


@dataclass
class Contribution:
    files: list[DataFile]
    ranges: dict[TopicPartition, tuple[int, int]]


def worker(config_path: Path, handoff: mp.Queue[Contribution], stop: Event) -> None:
    config = load_config(config_path, environ={})
    catalog = open_catalog(config.catalog)
    sink = TableSink(config.tables[0], catalog, config.group_id, writer_id(), RetryPolicy())

    def ship(tps: list[TopicPartition] | None = None) -> None:
        parts = sink.buffer.take(tps)
        if parts:
            rows = pa.concat_tables([held.rows() for held in parts.values()])
            files = write_data_files(catalog.load_table(sink.identifier), rows)
            handoff.put(Contribution(files, {tp: (held.first, held.last) for tp, held in parts.items()}))

    consumer = GroupConsumer(config.kafka, config.group_id)
    consumer.subscribe(config.tables[0].all_topics,
                       RebalanceHandlers(start_offsets=sink.start_offsets, revoked=ship, lost=sink.drop))
    while not stop.is_set():
        now = time.monotonic()
        for chunk in consumer.poll(config.consumer.batch_size, 0.2):
            sink.ingest(chunk, now)
        if sink.is_flush_due(now, config.commit.interval_seconds, config.commit.max_buffer_bytes):
            ship()
    ship()
    consumer.close()


@dataclass
class CommitterStats:
    commits: int = 0
    attempts: int = 0
    conflicts: int = 0
    fenced: int = 0  # contributions dropped: their range was already taken (a rebalance handed it on)


def commit_interval(config_path: Path, contributions: list[Contribution], stats: CommitterStats) -> None:
    config = load_config(config_path, environ={})
    catalog = open_catalog(config.catalog)
    while True:
        stats.attempts += 1
        table = catalog.load_table(config.tables[0].table)
        committed = table_offsets(table, config.group_id)
        files: list[DataFile] = []
        new_offsets: dict[TopicPartition, int] = {}
        for contribution in contributions:
            # Judged in arrival order against the table *and* the contributions already taken: two
            # workers can hand in the same range around a rebalance.
            view = {**committed, **new_offsets}
            verdicts = [judge(OffsetRange(first, last), view.get(tp))
                        for tp, (first, last) in contribution.ranges.items()]
            if any(v is not Verdict.COMMIT for v in verdicts):
                stats.fenced += 1
                continue
            files.extend(contribution.files)
            new_offsets.update({tp: last + 1 for tp, (_, last) in contribution.ranges.items()})
        if not files:
            return
        properties = {
            offsets_key(config.group_id): encode_offsets(merge_offsets(committed, new_offsets)),
            COMMIT_ID_KEY: str(uuid.uuid4()),
            WRITER_ID_KEY: "elected",
        }
        try:
            append_files(table, files, properties)
        except CommitFailedException:
            stats.conflicts += 1
            continue
        stats.commits += 1
        return


def run_elected(config_path: Path, workers: int, seconds: float) -> CommitterStats:
    """Run N workers and the committer for `seconds`, then drain; returns the committer's counts."""
    context = mp.get_context("spawn")
    handoff: mp.Queue[Contribution] = context.Queue()
    stop = context.Event()
    processes = [context.Process(target=worker, args=(config_path, handoff, stop)) for _ in range(workers)]
    for process in processes:
        process.start()
    interval = load_config(config_path, environ={}).commit.interval_seconds
    stats = CommitterStats()
    deadline = time.monotonic() + seconds

    def drain(wait_s: float) -> list[Contribution]:
        got: list[Contribution] = []
        end = time.monotonic() + wait_s
        while time.monotonic() < end:
            with contextlib.suppress(queue.Empty):
                got.append(handoff.get(timeout=max(0.01, end - time.monotonic())))
        return got

    while time.monotonic() < deadline:
        contributions = drain(interval)
        if contributions:
            commit_interval(config_path, contributions, stats)
    stop.set()
    leftovers = drain(5.0)
    for process in processes:
        process.join(30)
    leftovers += drain(0.5)
    if leftovers:
        commit_interval(config_path, leftovers, stats)
    return stats
