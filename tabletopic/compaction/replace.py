"""A `replace` snapshot: the same rows, in other files. pyiceberg 0.12 has no producer for it.

`commit_replace` is pyiceberg's overwrite producer (rewrite the manifests that hold the removed
files, add a manifest for the new ones) with the operation Iceberg defines for compaction,
`replace`, which engines and maintenance tools read as "no logical change"; manifest merging
uses it, one attempt per plan.

`Replacement` is compaction's: one replace committed over as many attempts as busy writers make
it take. The overwrite producer reads every manifest of the base on every attempt, which with
a thousand manifests is slower than the gap between two writers' commits: it never lands. A
`Replacement` keeps what an attempt learnt and wrote — where each file it removes is listed, the
manifests it rewrote without them, its added and deleted-entries manifests — and on the next base
reads only the manifests it has not seen: new delete manifests always (a delete that may apply
to a file it removes takes that file's group out), new data manifests only when a manifest that
listed a file it removes is gone (another compaction, a manifest merge). A group whose file is no
longer live is taken out too, its new files deleted; the other groups go on. Manifests are
immutable, so a file listed live in a manifest the new base still has is live in it. The
snapshot id stays the same across attempts (its manifests name it), which also tells whether an
attempt whose outcome was unknown landed.

With `data_sequence_number` (compaction sets the starting snapshot's, like Iceberg's
`use-starting-sequence-number`), the new files carry it instead of the commit's: an equality delete
committed meanwhile (a live upsert) is above it and applies to the new files as it would have to the
ones they replace, so it does not take a group out; a position delete does, since it names files.
The same snapshot drops the equality deletes of the start that apply to no file any more
(`plan.dangling_deletes`), as DELETED entries keeping their sequence numbers.

The pyiceberg producers behind both (private API) live in catalog.pyiceberg_private.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pyiceberg.manifest import (
    DataFile,
    ManifestContent,
    ManifestEntry,
    ManifestEntryStatus,
    ManifestFile,
)
from pyiceberg.table import Table

from tabletopic.catalog.pyiceberg_private import (
    ReplaceSnapshot,
    commit_overwrite_as_replace,
    data_file_spec_id,
    new_manifest_writer,
)
from tabletopic.commit.committer import for_our_commit
from tabletopic.commit.state_keys import over_state
from tabletopic.compaction.plan import DeleteInfo, FileInfo, dangling_deletes, deletes_touching


def commit_replace(table: Table, removed: list[DataFile], added: list[DataFile], properties: dict[str, str]) -> None:
    """One `replace` snapshot on `main`; raises CommitFailedException if the table moved since `table` was loaded."""
    # Our loop validates and retries (compaction.rewrite); the producer reads the base snapshot only.
    commit_overwrite_as_replace(for_our_commit(table), removed, added, over_state(table, properties))


@dataclass
class Group:
    """Files rewritten together: `removed` go, `added` (the same rows) come."""

    removed: list[FileInfo]
    added: list[DataFile]
    rows: int = 0


@dataclass(frozen=True)
class Dropped:
    group: Group
    reason: str


@dataclass
class _Home:
    manifest_path: str
    entry: ManifestEntry  # the live entry listing the file there


@dataclass
class AttemptStats:
    manifests_read: int = 0  # manifest files read by the last `rebase`


@dataclass
class Replacement:
    """One compaction's replace snapshot, rebased and committed attempt after attempt (see the module doc)."""

    table: Table  # as of the snapshot the groups were planned from
    groups: list[Group]
    properties: dict[str, str]
    # The data sequence number of the new files (None: the commit's). Set, new equality deletes keep groups.
    data_sequence_number: int | None = None
    # The starting snapshot's live equality deletes and data files: which deletes the replace leaves dangling.
    equality_deletes: list[DeleteInfo] = field(default_factory=list)
    live_data: list[FileInfo] = field(default_factory=list)
    snapshot_id: int = 0
    stats: AttemptStats = field(default_factory=AttemptStats)
    deletes_dropped: list[str] = field(default_factory=list)  # by the last attempt
    _base_id: int | None = None
    _homes: dict[str, _Home] = field(default_factory=dict)  # removed file path -> where it is listed live
    _delete_homes: dict[str, _Home] = field(default_factory=dict)  # the same for `equality_deletes`
    _read: set[str] = field(default_factory=set)  # manifests whose entries were read
    _entries: dict[str, list[ManifestEntry]] = field(default_factory=dict)  # of manifests holding removed files
    _known_deletes: set[str] = field(default_factory=set)  # delete files live in the starting snapshot
    _written: dict[object, ManifestFile | None] = field(default_factory=dict)  # manifests made, by what they hold
    _written_paths: list[str] = field(default_factory=list)  # every file written (manifests and manifest lists)

    def __post_init__(self) -> None:
        self.snapshot_id = self.table.metadata.new_snapshot_id()

    def has_work(self) -> bool:
        """Groups left to commit, or deletes to drop."""
        return bool(self.groups or self._dangling())

    def landed(self, table: Table) -> bool:
        return table.metadata.snapshot_by_id(self.snapshot_id) is not None

    def rebase(self, table: Table) -> list[Dropped]:
        """Check every group against `table`'s current snapshot; take out (and return) those that can no longer go."""
        self.stats = AttemptStats()
        base = table.current_snapshot()
        if base is None:
            return self._drop_all("the table has no snapshot any more")
        if self._base_id is not None and not _is_ancestor(table, self._base_id, base.snapshot_id):
            return self._drop_all("the snapshot it rebased on last is no longer an ancestor of the current one")
        first = self._base_id is None
        manifests = base.manifests(table.io)
        listed = {m.manifest_path for m in manifests}
        new_deletes: list[DeleteInfo] = []
        specs = table.specs()
        for manifest in manifests:
            if manifest.content != ManifestContent.DELETES or manifest.manifest_path in self._read:
                continue
            for entry in self._fetch(table, manifest):
                if entry.data_file.file_path not in self._known_deletes:
                    if first:
                        self._known_deletes.add(entry.data_file.file_path)
                    else:
                        unpartitioned = specs[entry.data_file.spec_id].is_unpartitioned()
                        new_deletes.append(delete_info(entry.data_file, unpartitioned, entry.sequence_number or 0))
        missing = self._missing(listed)
        if missing:
            for manifest in manifests:
                if manifest.content == ManifestContent.DATA and manifest.manifest_path not in self._read:
                    for entry in self._fetch(table, manifest):
                        if entry.data_file.file_path in missing:
                            self._homes[entry.data_file.file_path] = _Home(manifest.manifest_path, entry)
            missing = self._missing(listed)
        dropped = []
        for group in self.groups:
            gone = [f.path for f in group.removed if f.path in missing]
            touching = deletes_touching(new_deletes, group.removed,
                                        equality_ok=self.data_sequence_number is not None)
            if gone:
                dropped.append(Dropped(group, f"files it replaces are no longer live: {gone[:3]}"))
            elif touching:
                dropped.append(Dropped(group, f"delete files committed meanwhile may apply to files it replaces: "
                                              f"{touching[:3]}"))
        self._take_out(dropped)
        self._base_id = base.snapshot_id
        return dropped

    def commit(self, table: Table) -> None:
        """One attempt on `table` (rebased first); raises CommitFailedException if the table moved since."""
        base = table.current_snapshot()
        assert base is not None and base.snapshot_id == self._base_id, "rebase before committing"
        # The snapshot is made from the base alone: pyiceberg's deep copies of a long history would make
        # each attempt slower than busy writers' gaps between commits.
        properties = over_state(table, self.properties)
        table = for_our_commit(table)
        removed = {f.path for group in self.groups for f in group.removed}
        base_manifests = base.manifests(table.io)
        listed = {m.manifest_path for m in base_manifests}
        # A delete whose manifest someone rewrote since (a manifest merge) stays: the next compaction drops it.
        dropped_deletes = {p for p in self._dangling() if self._delete_homes[p].manifest_path in listed}
        self.deletes_dropped = sorted(dropped_deletes)
        by_home: dict[str, set[str]] = {}
        for path in removed:
            by_home.setdefault(self._homes[path].manifest_path, set()).add(path)
        for path in dropped_deletes:
            by_home.setdefault(self._delete_homes[path].manifest_path, set()).add(path)
        manifests = [*self._added_manifests(table), *self._deleted_manifests(table, removed, self._homes),
                     *self._deleted_manifests(table, dropped_deletes, self._delete_homes, deletes=True)]
        for manifest in base_manifests:
            leaving = by_home.get(manifest.manifest_path)
            if leaving is None:
                manifests.append(manifest)
                continue
            rewritten = self._without(table, manifest, frozenset(leaving))
            if rewritten is not None:
                manifests.append(rewritten)
        snapshot = ReplaceSnapshot(table, self.snapshot_id, manifests,
                                   [*(self._homes[p].entry.data_file for p in removed),
                                    *(self._delete_homes[p].entry.data_file for p in dropped_deletes)],
                                   (f for group in self.groups for f in group.added), properties)
        try:
            snapshot.stage()
        finally:
            self._written_paths += snapshot.manifest_lists
        snapshot.commit()

    def written_unused(self, table: Table | None) -> list[str]:
        """Files this replacement wrote that its snapshot in `table` (None: it did not land) does not reference."""
        kept: set[str] = set()
        snapshot = table.metadata.snapshot_by_id(self.snapshot_id) if table is not None else None
        if table is not None and snapshot is not None:
            kept = {snapshot.manifest_list, *(m.manifest_path for m in snapshot.manifests(table.io))}
        return [path for path in self._written_paths if path not in kept]

    # -- helpers

    def _fetch(self, table: Table, manifest: ManifestFile) -> list[ManifestEntry]:
        self._read.add(manifest.manifest_path)
        self.stats.manifests_read += 1
        entries = manifest.fetch_manifest_entry(table.io, discard_deleted=True)
        if manifest.content == ManifestContent.DELETES:
            wanted = {d.path for d in self.equality_deletes}
            holding = [e for e in entries if e.data_file.file_path in wanted]
            for entry in holding:
                self._delete_homes.setdefault(entry.data_file.file_path, _Home(manifest.manifest_path, entry))
            if holding:
                self._entries[manifest.manifest_path] = entries
        else:
            wanted = {f.path for group in self.groups for f in group.removed}
            holding = [e for e in entries if e.data_file.file_path in wanted]
            for entry in holding:
                self._homes.setdefault(entry.data_file.file_path, _Home(manifest.manifest_path, entry))
            if holding:
                self._entries[manifest.manifest_path] = entries
        return entries

    def _missing(self, listed: set[str]) -> set[str]:
        return {f.path for group in self.groups for f in group.removed
                if f.path not in self._homes or self._homes[f.path].manifest_path not in listed}

    def _drop_all(self, reason: str) -> list[Dropped]:
        dropped = [Dropped(group, reason) for group in self.groups]
        self._take_out(dropped)
        self.equality_deletes = []
        return dropped

    def _dangling(self) -> list[str]:
        """The starting snapshot's equality deletes that apply to no file once the groups are committed."""
        if self.data_sequence_number is None:
            return []  # new files with the commit's sequence number: the argument of dangling_deletes fails
        removed = {f.path for group in self.groups for f in group.removed}
        return [path for path in dangling_deletes(self.equality_deletes, self.live_data, removed)
                if path in self._delete_homes]

    def _take_out(self, dropped: list[Dropped]) -> None:
        out = {id(d.group) for d in dropped}
        self.groups = [group for group in self.groups if id(group) not in out]

    def _made(self, key: object, table: Table, spec_id: int, entries: list[ManifestEntry],
              deletes: bool = False) -> ManifestFile | None:
        if key not in self._written:
            manifest = None
            if entries:
                with new_manifest_writer(table, spec_id, self.snapshot_id, self._written_paths, deletes) as writer:
                    for entry in entries:
                        writer.add_entry(entry)
                manifest = writer.to_manifest_file()
            self._written[key] = manifest
        return self._written[key]

    def _added_manifests(self, table: Table) -> list[ManifestFile]:
        by_spec: dict[int, list[DataFile]] = {}
        for group in self.groups:
            for data_file in group.added:
                # pyiceberg's writer leaves it unset: the files are partitioned by the spec at planning time.
                spec_id = data_file_spec_id(data_file, self.table.metadata.default_spec_id)
                by_spec.setdefault(spec_id, []).append(data_file)
        made = []
        for spec_id, files in sorted(by_spec.items()):
            entries = [added_entry(self.snapshot_id, self.data_sequence_number, f) for f in files]
            key = ("added", spec_id, tuple(f.file_path for f in files))
            manifest = self._made(key, table, spec_id, entries)
            if manifest is not None:
                made.append(manifest)
        return made

    def _deleted_manifests(self, table: Table, removed: set[str], homes: dict[str, _Home],
                           deletes: bool = False) -> list[ManifestFile]:
        by_spec: dict[int, list[_Home]] = {}
        for path in sorted(removed):
            home = homes[path]
            by_spec.setdefault(home.entry.data_file.spec_id, []).append(home)
        made: list[ManifestFile] = []
        for spec_id, listed in sorted(by_spec.items()):
            entries = [ManifestEntry.from_args(status=ManifestEntryStatus.DELETED, snapshot_id=self.snapshot_id,
                                               sequence_number=h.entry.sequence_number,
                                               file_sequence_number=h.entry.file_sequence_number,
                                               data_file=h.entry.data_file) for h in listed]
            key = ("deleted", deletes, spec_id, tuple((h.manifest_path, h.entry.data_file.file_path) for h in listed))
            manifest = self._made(key, table, spec_id, entries, deletes)
            if manifest is not None:
                made.append(manifest)
        return made

    def _without(self, table: Table, manifest: ManifestFile, leaving: frozenset[str]) -> ManifestFile | None:
        """`manifest` rewritten without the entries of `leaving` (None when nothing else is left)."""
        staying = [ManifestEntry.from_args(status=ManifestEntryStatus.EXISTING, snapshot_id=e.snapshot_id,
                                           sequence_number=e.sequence_number,
                                           file_sequence_number=e.file_sequence_number, data_file=e.data_file)
                   for e in self._entries[manifest.manifest_path] if e.data_file.file_path not in leaving]
        return self._made(("rewritten", manifest.manifest_path, leaving), table, manifest.partition_spec_id, staying,
                          manifest.content == ManifestContent.DELETES)


def added_entry(snapshot_id: int, data_sequence_number: int | None, data_file: DataFile) -> ManifestEntry:
    """An ADDED entry of `snapshot_id`; its data sequence number is `data_sequence_number` (None: the commit's).

    The file sequence number is always the commit's (left None, inherited from the manifest list). An
    explicit sequence number on an ADDED entry goes through `add_entry` as it is (`ManifestWriter.add`
    would drop the file sequence number), and the manifest's minimum sequence number follows it.
    """
    return ManifestEntry.from_args(status=ManifestEntryStatus.ADDED, snapshot_id=snapshot_id,
                                   sequence_number=data_sequence_number, file_sequence_number=None,
                                   data_file=data_file)


def _is_ancestor(table: Table, ancestor_id: int, snapshot_id: int) -> bool:
    parents = {s.snapshot_id: s.parent_snapshot_id for s in table.metadata.snapshots}
    cursor: int | None = snapshot_id
    for _ in range(len(parents) + 1):
        if cursor is None:
            return False
        if cursor == ancestor_id:
            return True
        cursor = parents.get(cursor)
    return False


POSITION_DELETE_PATH_FIELD_ID = 2147483546  # `file_path` of a position delete file (Iceberg spec, reserved id)


def delete_info(delete: DataFile, unpartitioned: bool, sequence_number: int = 0) -> DeleteInfo:
    from pyiceberg.manifest import DataFileContent

    referenced = None
    if delete.content == DataFileContent.POSITION_DELETES:
        lower = (delete.lower_bounds or {}).get(POSITION_DELETE_PATH_FIELD_ID)
        upper = (delete.upper_bounds or {}).get(POSITION_DELETE_PATH_FIELD_ID)
        if lower is not None and lower == upper:
            referenced = lower.decode()
    scope = None if unpartitioned else (delete.spec_id, repr(delete.partition))
    return DeleteInfo(delete.file_path, scope, referenced, sequence_number,
                      delete.content == DataFileContent.EQUALITY_DELETES)
