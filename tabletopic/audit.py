"""`tabletopic audit`: prove a table holds its topic exactly once, offset by offset.

Per partition it compares the offsets present in the topic below the table's committed offset
with the `_kafka_offset` values in the table and in its dead-letter table `<table>__dlq`: any
missing from both is a loss, any seen twice (in either or across both) a duplicate, any at or
past the committed offset is a row no commit should have written. Rows below the log start (a rebuild
seeded from the table, `--seed-from-table`, or a log that lost records to retention since) are counted
apart: the log cannot check them, but two of one offset are still a duplicate. Dead letters run ahead of the
table's offsets by up to one commit (they commit first); those are not counted yet, but one
past the dead-letter table's own committed offset is an error.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog
from pyiceberg.table import Table

from tabletopic.catalog import reader
from tabletopic.catalog.tables import load_if_exists
from tabletopic.commit.committer import table_offsets
from tabletopic.core import metadata
from tabletopic.deadletter.rows import dlq_identifier
from tabletopic.exceptions import AuditError
from tabletopic.kafka.reader import PartitionLog, read_offsets

if TYPE_CHECKING:
    from tabletopic.observe.progress import OnProgress

# How many example offsets a report line shows.
SAMPLE = 5


@dataclass
class PartitionReport:
    partition: int
    committed: int | None  # the table's next offset; None when the table holds nothing of it
    log_start: int
    log_end: int
    rows: int
    dead_letters: int
    missing: list[int]
    duplicated: list[int]
    beyond_committed: list[int]
    below_log_start: int = 0  # rows and dead letters below the log start: not checked against the log

    @property
    def ok(self) -> bool:
        return not (self.missing or self.duplicated or self.beyond_committed)


def compare_partition(
    partition: int,
    log: PartitionLog,
    committed: int | None,
    table_offsets_: np.ndarray,
    dead_letter_offsets: np.ndarray | None = None,
    dead_letters_committed: int | None = None,
) -> PartitionReport:
    """Pure comparison of one partition."""
    limit = committed if committed is not None else log.low
    letters = np.zeros(0, dtype=np.int64) if dead_letter_offsets is None else dead_letter_offsets
    letters_limit = dead_letters_committed if dead_letters_committed is not None else limit
    counted_letters = letters[letters < limit]
    values, counts = np.unique(np.concatenate([table_offsets_, counted_letters]), return_counts=True)
    duplicated = values[counts > 1]
    topic_offsets = np.asarray(log.offsets, dtype=np.int64)
    expected = topic_offsets[(topic_offsets >= log.low) & (topic_offsets < limit)]
    missing = np.setdiff1d(expected, values, assume_unique=True)
    beyond = np.concatenate([values[values >= limit], letters[letters >= max(letters_limit, limit)]])
    return PartitionReport(
        partition=partition,
        committed=committed,
        log_start=log.low,
        log_end=log.high,
        rows=int(table_offsets_.size),
        dead_letters=int(counted_letters.size),
        missing=missing.tolist(),
        duplicated=duplicated.tolist(),
        beyond_committed=beyond.tolist(),
        below_log_start=int((table_offsets_ < log.low).sum() + (counted_letters < log.low).sum()),
    )


def audit(
    catalog: Catalog, identifier: str, topic: str, group: str, kafka_settings: Mapping[str, str],
    starts: Mapping[int, int] | None = None, on_progress: OnProgress | None = None,
) -> list[PartitionReport]:
    """`starts`: audit each partition from this offset only (a backfilled range); default the log start.
    `on_progress`: told ("topic/partition", offsets read, offsets to read) as the topic is read."""
    table = catalog.load_table(identifier)
    names = {f.name for f in table.schema().fields}
    if not {metadata.TOPIC, metadata.PARTITION, metadata.OFFSET} <= names:
        raise AuditError(f"{identifier} has no Kafka metadata columns (_kafka_partition, _kafka_offset) to audit")
    committed_map = _committed(table, group, topic)
    rows = _coordinates(table, topic)
    dead_letter_table = load_if_exists(catalog, dlq_identifier(identifier))
    letters = None if dead_letter_table is None else _coordinates(dead_letter_table, topic)
    letters_committed = {} if dead_letter_table is None else _committed(dead_letter_table, group, topic)
    logs = read_offsets(kafka_settings, topic, upto=committed_map, on_progress=on_progress)
    partitions = sorted(set(logs) | set(committed_map))
    reports = []
    for partition in partitions:
        log = logs.get(partition, PartitionLog(0, 0))
        if starts is not None and partition in starts:
            log = PartitionLog(max(log.low, starts[partition]), log.high, log.offsets)
        reports.append(compare_partition(
            partition, log, committed_map.get(partition), _offsets_of(rows, partition),
            None if letters is None else _offsets_of(letters, partition), letters_committed.get(partition),
        ))
    return reports


def _committed(table: Table, group: str, topic: str) -> dict[int, int]:
    return {p: n for (t, p), n in table_offsets(table, group).items() if t == topic}


def _coordinates(table: Table, topic: str) -> pa.Table:
    return reader.read(table, columns=(metadata.PARTITION, metadata.OFFSET),
                       row_filter=f"{metadata.TOPIC} == '{topic}'")


def _offsets_of(rows: pa.Table, partition: int) -> np.ndarray:
    mask = pc.equal(rows[metadata.PARTITION], partition)
    return rows.filter(mask)[metadata.OFFSET].to_numpy(zero_copy_only=False).astype(np.int64)


def format_report(reports: Iterable[PartitionReport]) -> list[str]:
    lines = [f"{'partition':>9} {'committed':>10} {'log_start':>10} {'log_end':>10} {'rows':>10} "
             f"{'dead':>8} {'missing':>8} {'dup':>8} {'beyond':>8}  status"]
    for r in reports:
        committed = "-" if r.committed is None else str(r.committed)
        status = "ok" if r.ok else "FAIL"
        line = (f"{r.partition:>9} {committed:>10} {r.log_start:>10} {r.log_end:>10} {r.rows:>10} "
                f"{r.dead_letters:>8} {len(r.missing):>8} {len(r.duplicated):>8} {len(r.beyond_committed):>8}"
                f"  {status}")
        for label, offsets in (("missing", r.missing), ("duplicated", r.duplicated),
                               ("beyond committed", r.beyond_committed)):
            if offsets:
                line += f"  {label} e.g. {offsets[:SAMPLE]}"
        if r.below_log_start:
            line += f"  {r.below_log_start} rows below the log start ({r.log_start}), not checked against the log"
        lines.append(line)
    return lines
