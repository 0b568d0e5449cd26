"""Snapshot expiry that keeps recovery intact, then deletion of the files no snapshot needs.

pyiceberg's expiry edits metadata only; the files the expired snapshots alone referenced
(manifest lists, manifests, data files replaced by compactions) are deleted here, after the
metadata commit. Files of a commit in flight are never among them: they are referenced by no
snapshot, before or after.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import structlog
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException

from tabletopic.commit.offsets import OFFSETS_KEY_PREFIX
from tabletopic.compaction.files import referenced_files
from tabletopic.compaction.plan import SnapshotInfo, snapshots_to_expire
from tabletopic.exceptions import CommitError

log = structlog.get_logger(__name__)

MAX_ATTEMPTS = 10


@dataclass
class ExpiryResult:
    expired: int = 0
    files_deleted: int = 0


def expire(catalog: Catalog, identifier: str, older_than_ms: int, keep_last: int) -> ExpiryResult:
    for _ in range(MAX_ATTEMPTS):
        table = catalog.load_table(identifier)
        infos = [
            SnapshotInfo(s.snapshot_id, s.parent_snapshot_id, s.timestamp_ms, frozenset(
                k for k in (s.summary.additional_properties if s.summary else {}) if k.startswith(OFFSETS_KEY_PREFIX)))
            for s in table.metadata.snapshots
        ]
        current = table.current_snapshot()
        ids = snapshots_to_expire(infos, current.snapshot_id if current else None, older_than_ms, keep_last)
        if not ids:
            return ExpiryResult()
        before = referenced_files(table)
        try:
            table.maintenance.expire_snapshots().by_ids(ids).commit()
        except CommitFailedException:
            time.sleep(0.1)
            continue
        after = referenced_files(catalog.load_table(identifier))
        gone = sorted(before - after)
        for path in gone:
            table.io.delete(path)
        log.info("snapshots.expired", table=identifier, expired=len(ids), files_deleted=len(gone))
        return ExpiryResult(len(ids), len(gone))
    raise CommitError(f"{identifier}: snapshot expiry did not land after {MAX_ATTEMPTS} attempts")
