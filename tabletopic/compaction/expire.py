"""Snapshot expiry that keeps recovery intact, then deletion of the files no snapshot needs.

Step 1. Carry forward: a state key (an offsets map) whose newest carrier is old enough to expire is
        copied, value unchanged, into one new empty snapshot on top (an optimistic commit like a
        writer's: it lands only if nobody committed since the values were read). Without it one
        old carrier, a finished backfill's offsets, would pin every later snapshot.
Step 2. Expire what is old, except the newest `keep_last`, the chain back to each state key's
        newest carrier (readers walk it) and tagged or branch-head snapshots.
Step 3. Delete the files only the expired snapshots referenced (pyiceberg's expiry edits metadata
        only): manifest lists, manifests, data files replaced by compactions. Files of a commit in
        flight are never among them: no snapshot references them, before or after.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import structlog
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table

from tabletopic.commit.committer import append_files
from tabletopic.commit.state_keys import CARRIED_FROM_KEY, is_state_key
from tabletopic.compaction.files import referenced_files
from tabletopic.compaction.plan import SnapshotInfo, keys_to_carry, snapshots_to_expire
from tabletopic.core.backoff import RetryPolicy
from tabletopic.exceptions import CommitError

log = structlog.get_logger(__name__)

MAX_ATTEMPTS = 100
# A writer committed meanwhile: the next attempt reloads after 0.02 s, 0.04 s, … up to 1 s.
RETRY = RetryPolicy(initial_backoff_s=0.02, max_backoff_s=1.0, growth="linear", jitter=False)
DEADLINE_S = 120.0  # from the first attempt
@dataclass
class ExpiryResult:
    expired: int = 0
    files_deleted: int = 0
    carried: int = 0  # state keys copied forward into a new snapshot


def snapshot_infos(table: Table) -> list[SnapshotInfo]:
    infos = []
    for s in table.metadata.snapshots:
        keys = frozenset(k for k in (s.summary.additional_properties if s.summary else {}) if is_state_key(k))
        infos.append(SnapshotInfo(s.snapshot_id, s.parent_snapshot_id, s.timestamp_ms, keys))
    return infos


def expire(catalog: Catalog, identifier: str, older_than_ms: int, keep_last: int,
           deadline_s: float = DEADLINE_S) -> ExpiryResult:
    result = ExpiryResult()
    deadline = time.monotonic() + deadline_s
    for attempt in range(1, MAX_ATTEMPTS + 1):
        if attempt > 1:
            if time.monotonic() >= deadline:
                break
            time.sleep(RETRY.backoff(attempt))  # a writer committed meanwhile
        # An attempt is a reload, a decision from the metadata alone and a commit: the manifests are read
        # only once it has landed, or busy writers win every race against it.
        table = catalog.load_table(identifier)
        current = table.current_snapshot()
        current_id = current.snapshot_id if current else None
        # Step 1.
        carry = keys_to_carry(snapshot_infos(table), current_id, older_than_ms, keep_last)
        if carry:
            try:
                _carry_forward(table, carry)
            except CommitFailedException:
                continue  # its snapshot may carry the keys now
            result.carried = len(carry)
            log.info("snapshots.state_carried", table=identifier, keys=sorted(carry))
            table = catalog.load_table(identifier)
            current = table.current_snapshot()
            current_id = current.snapshot_id if current else None
        # Step 2.
        protected = {ref.snapshot_id for ref in table.metadata.refs.values()}
        ids = snapshots_to_expire(snapshot_infos(table), current_id, older_than_ms, keep_last, protected)
        if not ids:
            return result
        unexpired = Table(table.name(), table.metadata, table.metadata_location, table.io, table.catalog)
        try:
            table.maintenance.expire_snapshots().by_ids(ids).commit()  # (moves `table` to the new metadata)
        except CommitFailedException:
            continue
        # Step 3. Nothing has deleted the files of the metadata before the expiry yet.
        before = referenced_files(unexpired)
        after = referenced_files(catalog.load_table(identifier))
        gone = sorted(before - after)
        for path in gone:
            table.io.delete(path)
        log.info("snapshots.expired", table=identifier, expired=len(ids), files_deleted=len(gone))
        result.expired, result.files_deleted = len(ids), len(gone)
        return result
    raise CommitError(f"{identifier}: snapshot expiry did not land after {attempt} attempts")


def _carry_forward(table: Table, carriers: dict[str, int]) -> None:
    """One empty snapshot repeating each key's value from its newest carrier; readers see no change."""
    properties = {CARRIED_FROM_KEY: json.dumps(carriers, sort_keys=True)}
    for key, snapshot_id in carriers.items():
        snapshot = table.snapshot_by_id(snapshot_id)
        value = snapshot.summary.additional_properties.get(key) if snapshot and snapshot.summary else None
        if value is not None:
            properties[key] = value
    append_files(table, [], properties)
