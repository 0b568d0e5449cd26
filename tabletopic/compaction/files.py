"""What a table's metadata references, and what its location holds."""

from __future__ import annotations

from dataclasses import dataclass

from pyarrow.fs import FileSelector, FileType
from pyiceberg.io.pyarrow import PyArrowFileIO
from pyiceberg.manifest import ManifestEntryStatus
from pyiceberg.table import Table


def referenced_files(table: Table) -> set[str]:
    """Every manifest list, manifest and live data file of every snapshot the table keeps."""
    paths: set[str] = set()
    seen_manifests: set[str] = set()
    for snapshot in table.metadata.snapshots:
        paths.add(snapshot.manifest_list)
        for manifest in snapshot.manifests(table.io):
            paths.add(manifest.manifest_path)
            if manifest.manifest_path in seen_manifests:
                continue
            seen_manifests.add(manifest.manifest_path)
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=False):
                if entry.status != ManifestEntryStatus.DELETED:
                    paths.add(entry.data_file.file_path)
    return paths


def metadata_files(table: Table) -> set[str]:
    """The current metadata.json and the previous ones its log still names."""
    return {table.metadata_location, *(entry.metadata_file for entry in table.metadata.metadata_log)}


@dataclass(frozen=True)
class StoredFile:
    path: str  # as the table names it (scheme included)
    modified_ms: int


def stored_files(table: Table) -> list[StoredFile]:
    """Every file under the table's location, with its modification time."""
    io = table.io
    if not isinstance(io, PyArrowFileIO):
        raise TypeError(f"listing files needs pyiceberg's PyArrowFileIO, the table uses {type(io).__name__}")
    scheme, netloc, path = PyArrowFileIO.parse_location(table.location())
    fs = io.fs_by_scheme(scheme, netloc)
    infos = fs.get_file_info(FileSelector(path, recursive=True, allow_not_found=True))
    prefix = "file://" if scheme == "file" and table.location().startswith("file:") else ""
    stored = []
    for info in infos:
        if info.type != FileType.File:
            continue
        name = f"{scheme}://{info.path}" if scheme != "file" else f"{prefix}{info.path}"
        modified = info.mtime_ns // 1_000_000 if info.mtime_ns is not None else 0
        stored.append(StoredFile(name, modified))
    return stored
