"""Which files to rewrite together and which snapshots to expire. Pure: decides from listings only."""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class FileInfo:
    path: str
    partition: Hashable  # (spec id, partition values): files are only ever merged within one
    size_bytes: int
    sequence_number: int = 0  # the data sequence number: equality deletes apply to files below theirs


def bin_pack(files: Iterable[FileInfo], target_bytes: int, min_files: int) -> list[list[FileInfo]]:
    """Groups of small files per partition, each group's total at most `target_bytes`.

    A file at or above three quarters of the target is left alone; a group needs at least
    `min_files` files (rewriting two big files into one buys little). First-fit decreasing.
    """
    return _pack([info for info in files if info.size_bytes < target_bytes * 3 // 4], target_bytes, min_files)


def compaction_groups(files: Sequence[FileInfo], equality_deletes: Sequence[DeleteInfo], target_bytes: int,
                      min_files: int) -> list[list[FileInfo]]:
    """`bin_pack`'s groups, except that a partition where an equality delete applies to a file is
    rewritten whole, big files and lone files too: its rows are read with the deletes applied, and
    once no file below a delete's sequence number is left the delete can go (`dangling_deletes`)."""
    whole = scopes_with_applying_deletes(files, equality_deletes)
    rest = [info for info in files if info.partition not in whole]
    return bin_pack(rest, target_bytes, min_files) + _pack([info for info in files if info.partition in whole],
                                                            target_bytes, 1)


def scopes_with_applying_deletes(files: Iterable[FileInfo], equality_deletes: Iterable[DeleteInfo]) -> set[Hashable]:
    """The partitions holding a data file that one of `equality_deletes` applies to (its sequence number
    is above the file's; its scope is the file's partition, or it is global)."""
    lowest: dict[Hashable, int] = {}
    for info in files:
        lowest[info.partition] = min(info.sequence_number, lowest.get(info.partition, info.sequence_number))
    return {partition for partition, sequence_number in lowest.items()
            for delete in equality_deletes
            if (delete.scope is None or delete.scope == partition) and delete.sequence_number > sequence_number}


def dangling_deletes(equality_deletes: Iterable[DeleteInfo], live_data: Iterable[FileInfo],
                     removed: Collection[str]) -> list[str]:
    """The equality deletes that apply to no data file once the `removed` files are replaced.

    `equality_deletes` and `live_data` are the live files of the snapshot a compaction started from,
    S0; the files replacing `removed` carry S0's sequence number, at or above every delete live at
    S0, so none applies to them. Files committed after S0 carry a higher one, or (another compaction's
    output) that of a start whose inputs were live at S0 and are still here or were taken from
    `removed`, which the commit refuses: judging the files left of S0 is judging the committed snapshot.
    """
    left = [info for info in live_data if info.path not in removed]
    return [delete.path for delete in equality_deletes
            if all(info.sequence_number >= delete.sequence_number for info in left
                   if delete.scope is None or info.partition == delete.scope)]


def _pack(files: Iterable[FileInfo], target_bytes: int, min_files: int) -> list[list[FileInfo]]:
    """First-fit decreasing per partition; groups of fewer than `min_files` files are dropped."""
    small: dict[Hashable, list[FileInfo]] = {}
    for info in files:
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
    state_keys: frozenset[str]  # summary keys readers take from the newest ancestor carrying them (offsets maps)


def ancestry(snapshots: Sequence[SnapshotInfo], current_id: int | None) -> list[SnapshotInfo]:
    """The current snapshot and its ancestors, newest first, up to the first one the table no longer has."""
    by_id: Mapping[int, SnapshotInfo] = {s.snapshot_id: s for s in snapshots}
    chain: list[SnapshotInfo] = []
    cursor = by_id.get(current_id) if current_id is not None else None
    while cursor is not None:
        chain.append(cursor)
        cursor = by_id.get(cursor.parent_id) if cursor.parent_id is not None else None
    return chain


def newest_carriers(chain: Sequence[SnapshotInfo]) -> dict[str, int]:
    """Position in `chain` of the newest snapshot carrying each state key."""
    positions: dict[str, int] = {}
    for position, snapshot in enumerate(chain):
        for key in snapshot.state_keys:
            positions.setdefault(key, position)
    return positions


def keys_to_carry(
    snapshots: Sequence[SnapshotInfo], current_id: int | None, older_than_ms: int, keep_last: int
) -> dict[str, int]:
    """State keys whose newest carrier would be expired but for them: key -> that carrier's id.

    Readers find a key by walking back from the current snapshot, so its newest carrier and the
    whole chain up to it must stay; an old carrier (a finished backfill's offsets) would pin all
    later history. Copying these keys' values, unchanged, into a new snapshot on top frees it.
    """
    chain = ancestry(snapshots, current_id)
    window = max(keep_last, 1)
    return {key: chain[position].snapshot_id for key, position in sorted(newest_carriers(chain).items())
            if position >= window and chain[position].timestamp_ms < older_than_ms}


def snapshots_to_expire(
    snapshots: Sequence[SnapshotInfo], current_id: int | None, older_than_ms: int, keep_last: int,
    protected: Iterable[int] = (),
) -> list[int]:
    """Snapshots older than `older_than_ms`, except the newest `keep_last` of the current ancestry, the
    chain from the current snapshot back to the newest carrier of each state key (readers walk it,
    so it stays unbroken; `keys_to_carry` keeps it short) and the `protected` ones (tags, branch heads)."""
    chain = ancestry(snapshots, current_id)
    keep = {s.snapshot_id for s in chain[:max(keep_last, 1)]} | set(protected)
    deepest = max(newest_carriers(chain).values(), default=-1)
    keep.update(s.snapshot_id for s in chain[:deepest + 1])
    return sorted(s.snapshot_id for s in snapshots if s.timestamp_ms < older_than_ms and s.snapshot_id not in keep)


@dataclass(frozen=True)
class DeleteInfo:
    path: str
    scope: Hashable | None  # (spec id, partition values) like FileInfo.partition; None: unpartitioned, global
    referenced_path: str | None = None  # the one data file a position delete names, when its bounds say so
    sequence_number: int = 0
    equality: bool = False  # an equality delete (else a position delete)


def deletes_touching(deletes: Iterable[DeleteInfo], replaced: Iterable[FileInfo],
                     equality_ok: bool = False) -> list[str]:
    """The delete files that may apply to one of the `replaced` data files.

    A rewrite read its inputs with the deletes of its starting snapshot; a delete committed since
    names rows of files the rewrite removes, so it would not apply to the new files: those rows
    would come back. Unless (`equality_ok`) the new files carry the starting snapshot's sequence
    number: an equality delete committed since is above it, so it applies to them as to their inputs.
    """
    replaced = list(replaced)
    paths = {f.path for f in replaced}
    scopes = {f.partition for f in replaced}
    touching = []
    for delete in deletes:
        if delete.equality and equality_ok:
            continue
        if delete.referenced_path is not None:
            hit = delete.referenced_path in paths
        else:
            hit = delete.scope is None or delete.scope in scopes
        if hit:
            touching.append(delete.path)
    return touching
