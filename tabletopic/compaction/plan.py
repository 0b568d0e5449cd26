"""Which files to rewrite together and which snapshots to expire. Pure: decides from listings only."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class FileInfo:
    path: str
    partition: Hashable  # (spec id, partition values): files are only ever merged within one
    size_bytes: int


def bin_pack(files: Iterable[FileInfo], target_bytes: int, min_files: int) -> list[list[FileInfo]]:
    """Groups of small files per partition, each group's total at most `target_bytes`.

    A file at or above three quarters of the target is left alone; a group needs at least
    `min_files` files (rewriting two big files into one buys little). First-fit decreasing.
    """
    small: dict[Hashable, list[FileInfo]] = {}
    for info in files:
        if info.size_bytes < target_bytes * 3 // 4:
            small.setdefault(info.partition, []).append(info)
    groups: list[list[FileInfo]] = []
    for partition_files in small.values():
        bins: list[list[FileInfo]] = []
        totals: list[int] = []
        for info in sorted(partition_files, key=lambda f: (-f.size_bytes, f.path)):
            for i, total in enumerate(totals):
                if total + info.size_bytes <= target_bytes:
                    bins[i].append(info)
                    totals[i] += info.size_bytes
                    break
            else:
                bins.append([info])
                totals.append(info.size_bytes)
        groups += [b for b in bins if len(b) >= min_files]
    return groups


@dataclass(frozen=True)
class SnapshotInfo:
    snapshot_id: int
    parent_id: int | None
    timestamp_ms: int
    offsets_keys: frozenset[str]  # the tabletopic.offsets.<group> keys its summary carries


def snapshots_to_expire(
    snapshots: Sequence[SnapshotInfo], current_id: int | None, older_than_ms: int, keep_last: int
) -> list[int]:
    """Snapshots older than `older_than_ms`, except the newest `keep_last` of the current ancestry and
    the whole ancestry from the current snapshot back to the newest snapshot carrying each offsets
    key: recovery walks that chain to find the committed offsets, so it must stay unbroken."""
    by_id: Mapping[int, SnapshotInfo] = {s.snapshot_id: s for s in snapshots}
    keep: set[int] = set()
    chain: list[SnapshotInfo] = []
    cursor = by_id.get(current_id) if current_id is not None else None
    while cursor is not None:
        chain.append(cursor)
        cursor = by_id.get(cursor.parent_id) if cursor.parent_id is not None else None
    keep.update(s.snapshot_id for s in chain[:max(keep_last, 1)])
    all_keys = set().union(*(s.offsets_keys for s in snapshots)) if snapshots else set()
    for key in all_keys:
        for position, snapshot in enumerate(chain):
            if key in snapshot.offsets_keys:
                keep.update(s.snapshot_id for s in chain[:position + 1])
                break
    return sorted(s.snapshot_id for s in snapshots if s.timestamp_ms < older_than_ms and s.snapshot_id not in keep)
