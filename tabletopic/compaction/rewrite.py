"""Compaction: rewrite a table's small files, per partition, into files near a target size.

Step 1. Plan groups of small files from the current snapshot (compaction.plan.bin_pack).
Step 2. Read each group with the table's current schema and write its rows as new files.
Step 3. Commit one `replace` snapshot. If the table moved (a writer appended), reload: if the
        starting snapshot is still an ancestor and no delete file committed since may apply to a
        file to remove, commit again on the new base (the new files are kept); else (Spark deleted
        rows from one) abandon and delete the new files: the next run plans again, with those
        deletes applied. A file to remove that is no longer live (another compaction took it) makes
        pyiceberg's producer refuse the commit: abandon too.
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
from pyiceberg.exceptions import CommitFailedException, ValidationException
from pyiceberg.expressions import AlwaysTrue
from pyiceberg.io.pyarrow import ArrowScan
from pyiceberg.manifest import DataFile, DataFileContent, ManifestContent, ManifestEntryStatus
from pyiceberg.table import FileScanTask, Table
from pyiceberg.table.snapshots import Operation

from tabletopic.commit.committer import write_data_files
from tabletopic.compaction.plan import DeleteInfo, FileInfo, bin_pack, deletes_touching
from tabletopic.compaction.replace import commit_replace

log = structlog.get_logger(__name__)

COMPACTION_ID_KEY = "tabletopic.compaction-id"
MAX_ATTEMPTS = 20
POSITION_DELETE_PATH_FIELD_ID = 2147483546  # `file_path` of a position delete file (Iceberg spec, reserved id)


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
    start = table.current_snapshot()
    if start is None:
        return result
    tasks = {task.file.file_path: task for task in table.scan().plan_files()}
    infos = [FileInfo(path, (task.file.spec_id, repr(task.file.partition)), task.file.file_size_in_bytes)
             for path, task in tasks.items()]
    groups = bin_pack(infos, target_bytes, min_files)
    if not groups:
        return result
    result.groups = len(groups)
    replaced = [info for group in groups for info in group]
    removed = [tasks[info.path].file for info in replaced]
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
        except ValidationException:  # pyiceberg's check that every file to remove is live in the base
            return _abandon(table, added, result, "a file to replace is gone (another compaction?)")
        except CommitFailedException:
            # Back off before reloading, not after: a base that aged through the pause loses again to busy writers.
            time.sleep(min(2.0, 0.05 * attempt))
            table = catalog.load_table(identifier)
            new_deletes = deletes_since(table, start.snapshot_id)
            if new_deletes is None:
                return _abandon(table, added, result, "the snapshot the compaction started from is no longer an "
                                                      "ancestor of the current one")
            touching = deletes_touching(new_deletes, replaced)
            if touching:
                return _abandon(table, added, result, f"delete files committed meanwhile apply to files it "
                                                      f"replaces: {touching[:3]}")
            continue
        result.files_removed, result.files_added = len(removed), len(added)
        log.info("compaction.done", table=identifier, groups=result.groups, removed=len(removed), added=len(added),
                 rows=result.rows, attempts=attempt)
        return result
    return _abandon(table, added, result, f"no commit after {MAX_ATTEMPTS} attempts")


def deletes_since(table: Table, start_id: int) -> list[DeleteInfo] | None:
    """The delete files added after snapshot `start_id` up to the current one; None if it is no ancestor."""
    found: list[DeleteInfo] = []
    specs = table.specs()
    snapshot = table.current_snapshot()
    while snapshot is not None and snapshot.snapshot_id != start_id:
        # An `append` only adds data files (Iceberg spec): the writers' commits need no manifest read.
        is_append = snapshot.summary is not None and snapshot.summary.operation == Operation.APPEND
        for manifest in [] if is_append else snapshot.manifests(table.io):
            if manifest.content != ManifestContent.DELETES or manifest.added_snapshot_id != snapshot.snapshot_id:
                continue
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
                if entry.status == ManifestEntryStatus.ADDED and entry.snapshot_id == snapshot.snapshot_id:
                    found.append(_delete_info(entry.data_file, specs[entry.data_file.spec_id].is_unpartitioned()))
        parent = snapshot.parent_snapshot_id
        snapshot = table.snapshot_by_id(parent) if parent is not None else None
    return found if snapshot is not None else None


def _delete_info(delete: DataFile, unpartitioned: bool) -> DeleteInfo:
    referenced = None
    if delete.content == DataFileContent.POSITION_DELETES:
        lower = (delete.lower_bounds or {}).get(POSITION_DELETE_PATH_FIELD_ID)
        upper = (delete.upper_bounds or {}).get(POSITION_DELETE_PATH_FIELD_ID)
        if lower is not None and lower == upper:
            referenced = lower.decode()
    scope = None if unpartitioned else (delete.spec_id, repr(delete.partition))
    return DeleteInfo(delete.file_path, scope, referenced)


def _read(table: Table, tasks: list[FileScanTask]) -> pa.Table:
    scan = ArrowScan(table.metadata, table.io, table.schema(), AlwaysTrue())
    return scan.to_table(tasks)


def _abandon(table: Table, added: list[DataFile], result: CompactionResult, why: str) -> CompactionResult:
    for data_file in added:
        table.io.delete(data_file.file_path)
    result.abandoned = True
    log.warning("compaction.abandoned", table=".".join(table.name()), reason=why, attempts=result.attempts)
    return result
