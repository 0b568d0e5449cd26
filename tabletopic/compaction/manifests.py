"""Manifest merging: one `replace` snapshot that re-lists the live data files of many manifests in one.

Compaction already folds the manifests of the files it rewrites; this is for tables whose
files are big enough to be left alone, where every commit still adds a manifest and planning
a scan reads them all. The data files are removed and added back unchanged, so only the
metadata changes. Re-adding gives them a new sequence number, which would detach them from
older delete files: a table with delete files is left alone.
"""

from __future__ import annotations

import uuid

import structlog
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.manifest import ManifestContent

from tabletopic.compaction.replace import commit_replace

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
        if any(m.content == ManifestContent.DELETES for m in manifests):
            log.info("manifests.merge_skipped", table=identifier, reason="the table has delete files")
            return 0
        files = [entry.data_file for m in manifests for entry in m.fetch_manifest_entry(table.io, discard_deleted=True)]
        try:
            commit_replace(table, files, files, {MERGE_ID_KEY: merge_id})
        except CommitFailedException:
            continue  # a writer appended: plan again on the new snapshot
        log.info("manifests.merged", table=identifier, manifests=len(manifests), files=len(files))
        return len(manifests)
    log.warning("manifests.merge_abandoned", table=identifier, attempts=MAX_ATTEMPTS)
    return 0
