"""`tabletopic audit`: prove a table holds its topic exactly once, offset by offset.

Per partition it compares the offsets present in the topic below the table's committed offset
with the `_kafka_offset` values in the table: any missing is a loss, any seen twice a duplicate,
any at or past the committed offset is a row no commit should have written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog

from tabletopic.commit.committer import table_offsets
from tabletopic.decode import metadata
from tabletopic.exceptions import AuditError
from tabletopic.kafka.reader import PartitionLog, read_offsets

# How many example offsets a report line shows.
SAMPLE = 5


@dataclass
class PartitionReport:
    partition: int
    committed: int | None  # the table's next offset; None when the table holds nothing of it
    log_start: int
    log_end: int
    rows: int
    missing: list[int]
    duplicated: list[int]
    beyond_committed: list[int]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.duplicated or self.beyond_committed)


def compare_partition(
    partition: int, log: PartitionLog, committed: int | None, table_offsets_: np.ndarray
) -> PartitionReport:
    """Pure comparison of one partition."""
    values, counts = np.unique(table_offsets_, return_counts=True)
    duplicated = values[counts > 1]
    limit = committed if committed is not None else log.low
    topic_offsets = np.asarray(log.offsets, dtype=np.int64)
    expected = topic_offsets[(topic_offsets >= log.low) & (topic_offsets < limit)]
    missing = np.setdiff1d(expected, values, assume_unique=True)
    beyond = values[values >= limit]
    return PartitionReport(
        partition=partition,
        committed=committed,
        log_start=log.low,
        log_end=log.high,
        rows=int(table_offsets_.size),
        missing=missing.tolist(),
        duplicated=duplicated.tolist(),
        beyond_committed=beyond.tolist(),
    )


def audit(
    catalog: Catalog, identifier: str, topic: str, group: str, kafka_settings: Mapping[str, str]
) -> list[PartitionReport]:
    table = catalog.load_table(identifier)
    names = {f.name for f in table.schema().fields}
    if not {metadata.TOPIC, metadata.PARTITION, metadata.OFFSET} <= names:
        raise AuditError(f"{identifier} has no Kafka metadata columns (_kafka_partition, _kafka_offset) to audit")
    committed_map = {p: n for (t, p), n in table_offsets(table, group).items() if t == topic}
    rows = table.scan(
        row_filter=f"{metadata.TOPIC} == '{topic}'", selected_fields=(metadata.PARTITION, metadata.OFFSET)
    ).to_arrow()
    logs = read_offsets(kafka_settings, topic, upto=committed_map)
    partitions = sorted(set(logs) | set(committed_map))
    reports = []
    for partition in partitions:
        mask = pc.equal(rows[metadata.PARTITION], partition)
        offsets = rows.filter(mask)[metadata.OFFSET].to_numpy(zero_copy_only=False).astype(np.int64)
        log = logs.get(partition, PartitionLog(0, 0))
        reports.append(compare_partition(partition, log, committed_map.get(partition), offsets))
    return reports


def format_report(reports: Iterable[PartitionReport]) -> list[str]:
    lines = [f"{'partition':>9} {'committed':>10} {'log_start':>10} {'log_end':>10} {'rows':>10} "
             f"{'missing':>8} {'dup':>8} {'beyond':>8}  status"]
    for r in reports:
        committed = "-" if r.committed is None else str(r.committed)
        status = "ok" if r.ok else "FAIL"
        line = (f"{r.partition:>9} {committed:>10} {r.log_start:>10} {r.log_end:>10} {r.rows:>10} "
                f"{len(r.missing):>8} {len(r.duplicated):>8} {len(r.beyond_committed):>8}  {status}")
        for label, offsets in (("missing", r.missing), ("duplicated", r.duplicated),
                               ("beyond committed", r.beyond_committed)):
            if offsets:
                line += f"  {label} e.g. {offsets[:SAMPLE]}"
        lines.append(line)
    return lines
