"""Orphan files: under the table's location, referenced by no snapshot and no kept metadata file,
and older than a safety age (a commit in flight has written files no snapshot names yet)."""

from __future__ import annotations

import structlog
from pyiceberg.catalog import Catalog

from tabletopic.compaction.files import metadata_files, referenced_files, stored_files

log = structlog.get_logger(__name__)


def find_orphans(catalog: Catalog, identifier: str, older_than_ms: int) -> list[str]:
    table = catalog.load_table(identifier)
    stored = stored_files(table)  # listed before the references are read: a file committed meanwhile is kept
    kept = referenced_files(table) | metadata_files(table)
    kept |= {_without_scheme(p) for p in kept}
    return sorted(f.path for f in stored
                  if f.modified_ms < older_than_ms and f.path not in kept and _without_scheme(f.path) not in kept)


def remove_orphans(catalog: Catalog, identifier: str, older_than_ms: int, dry_run: bool) -> list[str]:
    orphans = find_orphans(catalog, identifier, older_than_ms)
    if not dry_run:
        io = catalog.load_table(identifier).io
        for path in orphans:
            io.delete(path)
    log.info("orphans.found" if dry_run else "orphans.removed", table=identifier, files=len(orphans))
    return orphans


def _without_scheme(path: str) -> str:
    return path.split("://", 1)[1] if "://" in path else path
