"""Manifest merging: one `replace` snapshot that re-lists the live files of many manifests in a few.

Compaction already folds the manifests of the files it rewrites; this is for tables whose
files are big enough to be left alone, where every commit still adds a manifest (an upsert
commit two) and planning a scan reads them all. Only the metadata changes: each live entry is
copied as EXISTING with its snapshot id and both sequence numbers, data entries into one data
manifest per spec, delete entries into one delete manifest per spec. Keeping the data sequence
numbers is what keeps every delete applying to exactly the rows it applied to before: re-adding
the files would give them the merge's, above every delete, and deleted rows would come back.
"""

from __future__ import annotations

import uuid

import structlog
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.manifest import ManifestContent, ManifestEntry, ManifestEntryStatus, ManifestFile
from pyiceberg.table import Table

from tabletopic.catalog.pyiceberg_private import ReplaceSnapshot, new_manifest_writer
from tabletopic.commit.committer import for_our_commit
from tabletopic.commit.state_keys import over_state

log = structlog.get_logger(__name__)

MERGE_ID_KEY = "tabletopic.manifest-merge-id"
MAX_ATTEMPTS = 10


def merge_manifests(catalog: Catalog, identifier: str, min_manifests: int) -> int:
    """Merge when the current snapshot has at least `min_manifests` manifests; returns how many it had."""
    merge_id = str(uuid.uuid4())
    for _ in range(MAX_ATTEMPTS):
        table = catalog.load_table(identifier)
        snapshot = table.current_snapshot()
        if snapshot is None:
            return 0
        manifests = snapshot.manifests(table.io)
        if len(manifests) < min_manifests:
            return 0
        written: list[str] = []
        snapshot_id = table.metadata.new_snapshot_id()
        try:
            merged, files = _merged(table, manifests, snapshot_id, written)
            replace = ReplaceSnapshot(for_our_commit(table), snapshot_id, merged, [], [],
                                      over_state(table, {MERGE_ID_KEY: merge_id}))
            try:
                replace.stage()
            finally:
                written += replace.manifest_lists
            replace.commit()
        except CommitFailedException:
            for path in written:
                table.io.delete(path)
            continue  # a writer committed: plan again on the new snapshot
        log.info("manifests.merged", table=identifier, manifests=len(manifests), files=files)
        return len(manifests)
    log.warning("manifests.merge_abandoned", table=identifier, attempts=MAX_ATTEMPTS)
    return 0


def _merged(table: Table, manifests: list[ManifestFile], snapshot_id: int,
            written: list[str]) -> tuple[list[ManifestFile], int]:
    """One manifest per (content, spec) of `snapshot_id` listing the live entries of `manifests`, unchanged
    but for their status (EXISTING); and how many files they list."""
    by_kind: dict[tuple[bool, int], list[ManifestEntry]] = {}
    for manifest in manifests:
        deletes = manifest.content == ManifestContent.DELETES
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
            by_kind.setdefault((deletes, manifest.partition_spec_id), []).append(ManifestEntry.from_args(
                status=ManifestEntryStatus.EXISTING, snapshot_id=entry.snapshot_id,
                sequence_number=entry.sequence_number, file_sequence_number=entry.file_sequence_number,
                data_file=entry.data_file))
    merged = []
    for (deletes, spec_id), entries in sorted(by_kind.items()):
        with new_manifest_writer(table, spec_id, snapshot_id, written, deletes) as writer:
            for entry in entries:
                writer.add_entry(entry)
        merged.append(writer.to_manifest_file())
    return merged, sum(len(entries) for entries in by_kind.values())
