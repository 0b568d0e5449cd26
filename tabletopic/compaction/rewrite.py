"""Compaction: rewrite a table's small files, per partition, into files near a target size.

Step 1. Plan groups from the live files of the current snapshot, S0 (catalog.reader.live_files):
        small files per partition (compaction.plan.bin_pack), and every file of a partition where an
        equality delete applies to one (an upsert table's: compaction.plan.compaction_groups).
Step 2. Read each group as of S0 with the table's current schema and every delete that applies
        (catalog.reader.read), and write its rows as new files.
Step 3. Commit one `replace` snapshot (compaction.replace.Replacement). The new files carry S0's
        data sequence number (Iceberg's `use-starting-sequence-number`): an equality delete an
        upsert commits meanwhile applies to them as to the files they replace, so a key deleted
        or updated meanwhile neither comes back nor loses its update. The equality deletes that
        apply to no file any more leave in the same snapshot. If the table moved (a writer
        committed), reload and rebase: only the manifests added since are read, what the failed
        attempt wrote is reused. A group that can no longer go — a file it replaces is no longer
        live (another compaction took it), or a position delete committed since may apply to one
        (Spark deleted rows from it) — is abandoned and its new files deleted: the next run plans
        again, with those deletes applied; the other groups go on. If the starting snapshot is no
        longer an ancestor, or past `deadline_s`, everything is abandoned.
The replace snapshot carries no offsets map; recovery finds the writers' offsets in its
ancestry. A writer that loses a race against it simply retries its own commit.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException, CommitStateUnknownException
from pyiceberg.table import Table

from tabletopic.catalog import reader
from tabletopic.commit.committer import write_data_files
from tabletopic.compaction.plan import DeleteInfo, FileInfo, compaction_groups, dangling_deletes
from tabletopic.compaction.replace import Dropped, Group, Replacement
from tabletopic.core.backoff import RetryPolicy

if TYPE_CHECKING:
    from tabletopic.observe.progress import OnProgress

log = structlog.get_logger(__name__)

COMPACTION_ID_KEY = "tabletopic.compaction-id"
MAX_ATTEMPTS = 100
# A writer committed meanwhile: the next attempt reloads after 0.02 s, 0.04 s, … up to 1 s.
RETRY = RetryPolicy(initial_backoff_s=0.02, max_backoff_s=1.0, growth="linear", jitter=False)
DEADLINE_S = 120.0  # from the first attempt; then the next run plans again


@dataclass
class CompactionResult:
    groups: int = 0
    files_removed: int = 0
    files_added: int = 0
    rows: int = 0
    attempts: int = 0
    abandoned: bool = False  # nothing landed
    groups_abandoned: int = 0
    deletes_removed: int = 0  # equality-delete files that applied to no data file any more
    manifests_read: list[int] = field(default_factory=list)  # per attempt: manifest files read to rebase it


def compact(catalog: Catalog, identifier: str, target_bytes: int, min_files: int = 2,
            deadline_s: float = DEADLINE_S, on_progress: OnProgress | None = None) -> CompactionResult:
    """`on_progress`: told (table, files rewritten, files planned) as the groups are rewritten."""
    result = CompactionResult()
    table = catalog.load_table(identifier)
    start = table.current_snapshot()
    if start is None:
        return result
    listing = reader.live_files(table, start)
    live = {f.file.file_path: f for f in listing.data}
    infos = [FileInfo(path, (f.spec_id, repr(f.file.partition)), f.file.file_size_in_bytes, f.data_sequence_number)
             for path, f in live.items()]
    specs = table.specs()
    equality_deletes = [DeleteInfo(d.file.file_path,
                                   None if specs[d.spec_id].is_unpartitioned() else (d.spec_id, repr(d.file.partition)),
                                   sequence_number=d.data_sequence_number, equality=True)
                        for d in listing.equality_deletes]
    planned = compaction_groups(infos, equality_deletes, target_bytes, min_files)
    if not planned and not dangling_deletes(equality_deletes, infos, ()):
        return result
    result.groups = len(planned)
    groups = []
    planned_files, rewritten = sum(len(files) for files in planned), 0
    if on_progress is not None and planned:
        on_progress(identifier, rewritten, planned_files)
    for files in planned:
        rows = reader.read(table, files=[live[info.path] for info in files], snapshot=start)
        groups.append(Group(files, write_data_files(table, rows), rows.num_rows))
        rewritten += len(files)
        if on_progress is not None:
            on_progress(identifier, rewritten, planned_files)
    replacement = Replacement(table, groups, {COMPACTION_ID_KEY: str(uuid.uuid4())},
                              data_sequence_number=start.sequence_number, equality_deletes=equality_deletes,
                              live_data=infos)
    deadline = time.monotonic() + deadline_s
    uncertain = False  # an attempt's outcome was unknown: its files may be referenced, never delete them
    for attempt in range(1, MAX_ATTEMPTS + 1):
        result.attempts = attempt
        _drop(table, replacement.rebase(table), result, delete=not uncertain)
        result.manifests_read.append(replacement.stats.manifests_read)
        if not replacement.has_work():
            break
        try:
            replacement.commit(table)
        except (CommitFailedException, CommitStateUnknownException) as exc:
            unknown = isinstance(exc, CommitStateUnknownException)
            uncertain = uncertain or unknown
            # Back off before reloading, not after: a base that aged through the pause loses again to busy writers.
            time.sleep(RETRY.backoff(attempt))
            table = catalog.load_table(identifier)
            # Once an outcome was unknown, any later reload may be the first to show it landed.
            if uncertain and replacement.landed(table):
                return _landed(table, replacement, result)
            if time.monotonic() >= deadline:
                break
            continue
        return _landed(catalog.load_table(identifier), replacement, result)
    why = "every group was abandoned" if not replacement.groups else \
        f"no commit after {result.attempts} attempts in {deadline_s:.0f} s"
    _drop(table, [Dropped(group, why) for group in replacement.groups], result, delete=not uncertain)
    if not uncertain:  # else the orphan cleanup takes what no snapshot references, past its safety age
        _delete(table, replacement.written_unused(None))
    result.abandoned = True
    log.warning("compaction.abandoned", table=identifier, reason=why, attempts=result.attempts)
    return result


def _landed(table: Table, replacement: Replacement, result: CompactionResult) -> CompactionResult:
    _delete(table, replacement.written_unused(table))
    result.files_removed = sum(len(group.removed) for group in replacement.groups)
    result.files_added = sum(len(group.added) for group in replacement.groups)
    result.rows = sum(group.rows for group in replacement.groups)
    result.deletes_removed = len(replacement.deletes_dropped)
    log.info("compaction.done", table=".".join(table.name()), groups=len(replacement.groups),
             removed=result.files_removed, added=result.files_added, rows=result.rows, attempts=result.attempts,
             groups_abandoned=result.groups_abandoned, deletes_removed=result.deletes_removed)
    return result


def _drop(table: Table, dropped: list[Dropped], result: CompactionResult, delete: bool = True) -> None:
    for item in dropped:
        if delete:
            _delete(table, [data_file.file_path for data_file in item.group.added])
        result.groups_abandoned += 1
        log.warning("compaction.group_abandoned", table=".".join(table.name()), reason=item.reason,
                    files=len(item.group.removed))


def _delete(table: Table, paths: list[str]) -> None:
    for path in paths:
        table.io.delete(path)

