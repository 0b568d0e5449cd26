"""`tabletopic status`: per table, how far behind, how fresh, how healthy its files are.

Every table the writer writes is listed (resolver.py): route targets, the `topic_pattern` tables of
the topics that exist, and each `<table>__dlq` that exists (its lag is not measured: its offsets
move only when a dead letter lands).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from pyiceberg.catalog import Catalog
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot

from tabletopic.catalog.reader import data_file_sizes
from tabletopic.catalog.tables import load_if_exists
from tabletopic.commit.committer import table_newest_record_ms
from tabletopic.commit.offsets import offsets_key
from tabletopic.config import Config
from tabletopic.kafka.reader import topic_names
from tabletopic.offsets_admin import positions
from tabletopic.resolver import has_patterns, resolve


@dataclass
class TableStatus:
    table: str
    exists: bool
    lag: int | None = None  # records in the topics past the table's offsets
    partitions_invalid: int = 0  # partitions whose log no longer holds the table's offset
    last_commit_age_s: float | None = None  # since the newest snapshot carrying this group's offsets
    newest_record_age_s: float | None = None  # since the newest committed record's Kafka timestamp
    snapshots: int = 0
    data_files: int = 0
    small_files: int = 0  # below three quarters of the maintenance target size

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def statuses(catalog: Catalog, config: Config) -> list[TableStatus]:
    """The status of every table the writer writes; a dead-letter table only once it exists."""
    topics = topic_names(config.kafka) if has_patterns(config) else []
    found: list[TableStatus] = []
    for table in resolve(config, topics).tables:
        found.append(table_status(catalog, config, table.identifier, list(table.topics)))
        if table.dead_letters is not None and catalog.table_exists(table.dead_letters):
            found.append(table_status(catalog, config, table.dead_letters, [], measure_lag=False))
    return found


def table_status(catalog: Catalog, config: Config, identifier: str, topics: list[str],
                 measure_lag: bool = True) -> TableStatus:
    table = load_if_exists(catalog, identifier)
    if table is None:
        return TableStatus(identifier, exists=False)
    now_ms = time.time() * 1000
    status = TableStatus(identifier, exists=True, snapshots=len(table.snapshots()))
    if measure_lag:
        rows = positions(catalog, identifier, config.group_id, config.kafka, topics)
        status.lag = sum(r.lag or 0 for r in rows)
        status.partitions_invalid = sum(1 for r in rows if r.problem)
    committed = last_moved(table, offsets_key(config.group_id))
    if committed is not None:
        status.last_commit_age_s = round((now_ms - committed.timestamp_ms) / 1000, 1)
    newest = table_newest_record_ms(table)
    if newest is not None:
        status.newest_record_age_s = round((now_ms - newest) / 1000, 1)
    sizes = data_file_sizes(table)
    status.data_files = len(sizes)
    status.small_files = sum(1 for size in sizes if size < config.maintenance.target_file_size_bytes * 3 // 4)
    return status


def last_moved(table: Table, key: str) -> Snapshot | None:
    """The newest snapshot that changed `key`'s value (a commit of the group's writer, or a reset): every
    snapshot tabletopic makes repeats the offsets, so a compaction's or another group's is not one. Where the
    history ends (expired, or a catalog that serves no parents), the oldest snapshot carrying it."""
    by_id = {snapshot.snapshot_id: snapshot for snapshot in table.metadata.snapshots}
    snapshot = table.current_snapshot()
    for _ in range(len(by_id)):
        if snapshot is None:
            return None
        value = snapshot.summary.additional_properties.get(key) if snapshot.summary is not None else None
        parent = by_id.get(snapshot.parent_snapshot_id) if snapshot.parent_snapshot_id is not None else None
        if value is not None:
            before = parent.summary.additional_properties.get(key) if parent and parent.summary else None
            if parent is None or before != value:
                return snapshot
        snapshot = parent
    return None
