"""Compaction: rewrite a table's small files, per partition, into files near a target size.

Step 1. Plan groups of small files from the current snapshot (compaction.plan.bin_pack).
Step 2. Read each group with the table's current schema and write its rows as new files.
Step 3. Commit one `replace` snapshot. If the table moved (a writer appended), reload: if every
        file to remove is still live, commit again on the new base (the new files are kept);
        if one is gone (another compaction took it), abandon and delete the new files.
The replace snapshot carries no offsets map; recovery finds the writers' offsets in its
ancestry. A writer that loses a race against it simply retries its own commit.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import pyarrow as pa
import structlog
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.expressions import AlwaysTrue
from pyiceberg.io.pyarrow import ArrowScan
from pyiceberg.manifest import DataFile
from pyiceberg.table import FileScanTask, Table

from tabletopic.commit.committer import write_data_files
from tabletopic.compaction.plan import FileInfo, bin_pack
from tabletopic.compaction.replace import commit_replace

log = structlog.get_logger(__name__)

COMPACTION_ID_KEY = "tabletopic.compaction-id"
MAX_ATTEMPTS = 20


@dataclass
class CompactionResult:
    groups: int = 0
    files_removed: int = 0
    files_added: int = 0
    rows: int = 0
    attempts: int = 0
    abandoned: bool = False


def compact(catalog: Catalog, identifier: str, target_bytes: int, min_files: int = 2) -> CompactionResult:
    result = CompactionResult()
    table = catalog.load_table(identifier)
    if table.current_snapshot() is None:
        return result
    tasks = {task.file.file_path: task for task in table.scan().plan_files()}
    infos = [FileInfo(path, (task.file.spec_id, repr(task.file.partition)), task.file.file_size_in_bytes)
             for path, task in tasks.items()]
    groups = bin_pack(infos, target_bytes, min_files)
    if not groups:
        return result
    result.groups = len(groups)
    chosen = [tasks[info.path] for group in groups for info in group]
    removed = [task.file for task in chosen]
    added: list[DataFile] = []
    for group in groups:
        rows = _read(table, [tasks[info.path] for info in group])
        result.rows += rows.num_rows
        added += write_data_files(table, rows)
    properties = {COMPACTION_ID_KEY: str(uuid.uuid4())}
    for attempt in range(1, MAX_ATTEMPTS + 1):
        result.attempts = attempt
        try:
            commit_replace(table, removed, added, properties)
        except CommitFailedException:
            table = catalog.load_table(identifier)
            live = {task.file.file_path for task in table.scan().plan_files()}
            if not all(f.file_path in live for f in removed):
                return _abandon(table, added, result, "a file to replace is gone (another compaction?)")
            time.sleep(min(2.0, 0.05 * attempt))
            continue
        result.files_removed, result.files_added = len(removed), len(added)
        log.info("compaction.done", table=identifier, groups=result.groups, removed=len(removed), added=len(added),
                 rows=result.rows, attempts=attempt)
        return result
    return _abandon(table, added, result, f"no commit after {MAX_ATTEMPTS} attempts")


def _read(table: Table, tasks: list[FileScanTask]) -> pa.Table:
    scan = ArrowScan(table.metadata, table.io, table.schema(), AlwaysTrue())
    return scan.to_table(tasks)


def _abandon(table: Table, added: list[DataFile], result: CompactionResult, why: str) -> CompactionResult:
    for data_file in added:
        table.io.delete(data_file.file_path)
    result.abandoned = True
    log.warning("compaction.abandoned", table=".".join(table.name()), reason=why, attempts=result.attempts)
    return result
