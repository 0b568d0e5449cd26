"""Compaction against a real SQLite catalog and local files."""

import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import CommitFailedException

from tabletopic.commit.committer import table_offsets
from tabletopic.commit.state_keys import CARRIED_FROM_KEY, PER_SNAPSHOT_KEYS, carried_state, is_state_key
from tabletopic.commit.upsert_files import commit_upsert
from tabletopic.compaction.expire import expire
from tabletopic.compaction.replace import commit_replace
from tabletopic.compaction.rewrite import compact
from tabletopic.config import TableConfig
from tabletopic.core.backoff import RetryPolicy
from tabletopic.core.records import RecordChunk
from tabletopic.sink import TableSink
from tests.iceberg_fixtures import position_delete_file


@pytest.fixture
def catalog(tmp_path):
    return SqlCatalog("test", uri=f"sqlite:///{tmp_path}/catalog.db", warehouse=f"file://{tmp_path}")


def write_commits(catalog, commits, per_commit=50, partition_by=(), kafka_partition=0, group="g"):
    sink = TableSink(TableConfig(table="ns.t", topic="topic", partition_by=list(partition_by)), catalog, group, "w",
                     RetryPolicy())
    for c in range(commits):
        first = c * per_commit
        values = [b'{"n": %d, "k": "%s"}' % (n, b"ab"[n % 2:n % 2 + 1]) for n in range(first, first + per_commit)]
        n = len(values)
        offsets = list(range(first, first + n))
        sink.ingest(RecordChunk("topic", kafka_partition, offsets, [None] * n, values, [0] * n, [None] * n), now=0.0)
        sink.flush()
    return sink


def test_compaction_replaces_small_files_keeps_every_row_and_the_offsets(catalog):
    sink = write_commits(catalog, 12, partition_by=["k"])
    before = catalog.load_table("ns.t")
    rows_before = sorted(before.scan().to_arrow().drop_columns(["_kafka_timestamp"]).to_pylist(), key=str)
    files_before = len(before.inspect.files())
    result = compact(catalog, "ns.t", target_bytes=64 << 20)
    after = catalog.load_table("ns.t")
    assert result.files_removed == files_before == 24 and result.files_added == 2  # one per partition value
    assert len(after.inspect.files()) == 2
    assert after.current_snapshot().summary.operation.value == "replace"
    assert sorted(after.scan().to_arrow().drop_columns(["_kafka_timestamp"]).to_pylist(), key=str) == rows_before
    assert sink.start_offsets([("topic", 0)]) == {("topic", 0): 600}
    assert compact(catalog, "ns.t", target_bytes=64 << 20).groups == 0  # nothing small left


def test_a_replace_on_a_stale_table_fails_and_a_compaction_retry_rebases_on_appends(catalog):
    write_commits(catalog, 4)
    stale = catalog.load_table("ns.t")
    files = [task.file for task in stale.scan().plan_files()]
    write_commits(catalog, 1, kafka_partition=1)  # a writer appends meanwhile
    with pytest.raises(CommitFailedException):
        commit_replace(stale, files, [], {})
    result = compact(catalog, "ns.t", target_bytes=64 << 20)
    assert not result.abandoned and result.files_removed == 5
    assert catalog.load_table("ns.t").scan().count() == 250


def test_expiry_after_compaction_deletes_replaced_files_and_keeps_the_offsets(catalog, tmp_path):
    import os
    import time

    from tabletopic.compaction.files import referenced_files

    sink = write_commits(catalog, 6)
    compact(catalog, "ns.t", target_bytes=64 << 20)
    table = catalog.load_table("ns.t")
    old_data = {task.file.file_path for task in table.scan(snapshot_id=table.metadata.snapshots[-2].snapshot_id)
                .plan_files()}
    # The compaction's snapshot repeats its base's state (the offsets map, the newest record's time and the
    # projection the rows were made under): the whole old chain, and the files only it referenced, can go.
    state = {k: v for k, v in table.current_snapshot().summary.additional_properties.items() if is_state_key(k)}
    assert len(state) == 3 and state == carried_state(table)
    result = expire(catalog, "ns.t", older_than_ms=int(time.time() * 1000) + 1000, keep_last=1)
    table = catalog.load_table("ns.t")
    assert [s.summary.operation.value for s in table.metadata.snapshots] == ["replace"]
    assert result.carried == 0 and result.expired == 6
    assert not any(os.path.exists(p.removeprefix("file://")) for p in old_data)
    assert all(os.path.exists(p.removeprefix("file://")) for p in referenced_files(table))
    assert table.scan().count() == 300
    assert sink.start_offsets([("topic", 0)]) == {("topic", 0): 300}

    write_more(sink, 300)  # the writer commits on top: the carried snapshot can go like any other
    result = expire(catalog, "ns.t", older_than_ms=int(time.time() * 1000) + 1000, keep_last=1)
    table = catalog.load_table("ns.t")
    assert [s.summary.operation.value for s in table.metadata.snapshots] == ["append"]
    assert result.carried == 0 and result.expired == 1
    assert all(os.path.exists(p.removeprefix("file://")) for p in referenced_files(table))
    assert table.scan().count() == 350
    assert sink.start_offsets([("topic", 0)]) == {("topic", 0): 350}


def write_more(sink, first, count=50):
    values = [b'{"n": %d, "k": "a"}' % n for n in range(first, first + count)]
    sink.ingest(RecordChunk("topic", 0, list(range(first, first + count)), [None] * count, values, [0] * count,
                            [None] * count), now=0.0)
    sink.flush()


def test_orphans_older_than_the_safety_age_are_listed_then_removed(catalog, tmp_path):
    import os
    import time

    from tabletopic.compaction.orphans import remove_orphans

    write_commits(catalog, 2)
    table = catalog.load_table("ns.t")
    data_dir = table.location().removeprefix("file://") + "/data"
    stray, fresh = f"{data_dir}/from-a-failed-commit.parquet", f"{data_dir}/in-flight.parquet"
    for path in (stray, fresh):
        with open(path, "wb") as f:
            f.write(b"x")
    day_ago = time.time() - 2 * 86400
    os.utime(stray, (day_ago, day_ago))
    cutoff = int((time.time() - 86400) * 1000)
    listed = remove_orphans(catalog, "ns.t", cutoff, dry_run=True)
    assert [p.rsplit("/", 1)[1] for p in listed] == ["from-a-failed-commit.parquet"] and os.path.exists(stray)
    remove_orphans(catalog, "ns.t", cutoff, dry_run=False)
    assert not os.path.exists(stray) and os.path.exists(fresh)
    assert catalog.load_table("ns.t").scan().count() == 100


def test_many_manifests_of_big_files_are_merged_into_one_listing(catalog):
    from tabletopic.compaction.manifests import merge_manifests

    sink = write_commits(catalog, 12)
    table = catalog.load_table("ns.t")
    rows_before = sorted(table.scan().to_arrow()["n"].to_pylist())
    files_before = {task.file.file_path for task in table.scan().plan_files()}
    assert len(table.current_snapshot().manifests(table.io)) == 12
    assert merge_manifests(catalog, "ns.t", min_manifests=20) == 0
    assert merge_manifests(catalog, "ns.t", min_manifests=10) == 12
    table = catalog.load_table("ns.t")
    live = [m for m in table.current_snapshot().manifests(table.io) if m.added_files_count or m.existing_files_count]
    assert len(live) == 1
    assert {task.file.file_path for task in table.scan().plan_files()} == files_before  # the same data files
    assert sorted(table.scan().to_arrow()["n"].to_pylist()) == rows_before
    assert table.current_snapshot().summary.operation.value == "replace"
    assert sink.start_offsets([("topic", 0)]) == {("topic", 0): 600}


def test_an_old_backfill_key_no_longer_pins_the_history_after_it(catalog):
    import time

    write_commits(catalog, 1, kafka_partition=1, group="g.backfill")  # a backfill, long finished
    write_commits(catalog, 8, group="g")  # the live writer goes on
    table = catalog.load_table("ns.t")
    before = {group: table_offsets(table, group) for group in ("g", "g.backfill")}
    result = expire(catalog, "ns.t", older_than_ms=int(time.time() * 1000) + 1000, keep_last=2)
    table = catalog.load_table("ns.t")
    # Every writer commit repeated the backfill's map: nothing to carry, only the newest two snapshots are left.
    assert result.carried == 0 and result.expired == 7 and len(table.metadata.snapshots) == 2
    assert {group: table_offsets(table, group) for group in ("g", "g.backfill")} == before
    assert before["g.backfill"] == {("topic", 1): 50}
    assert table.scan().count() == 450


def test_a_tagged_old_snapshot_is_kept_and_does_not_stop_expiry(catalog):
    import time

    write_commits(catalog, 4)
    table = catalog.load_table("ns.t")
    tagged = table.metadata.snapshots[0].snapshot_id
    table.manage_snapshots().create_tag(tagged, "audit-2026").commit()
    result = expire(catalog, "ns.t", older_than_ms=int(time.time() * 1000) + 1000, keep_last=1)
    table = catalog.load_table("ns.t")
    assert result.expired == 2
    kept = sorted(s.snapshot_id for s in table.metadata.snapshots)
    assert kept == sorted([tagged, table.current_snapshot().snapshot_id])
    assert table.scan(snapshot_id=tagged).count() == 50 and table.scan().count() == 200


def test_per_snapshot_keys_name_the_keys_that_describe_one_snapshot_only():
    from tabletopic.catalog.projection import FREEZE_SUMMARY_KEY, PROJECTION_HASH_KEY
    from tabletopic.commit.committer import NEWEST_RECORD_KEY
    from tabletopic.commit.offsets import COMMIT_ID_KEY, WRITER_ID_KEY, offsets_key, topic_ids_key
    from tabletopic.commit.state_keys import is_state_key
    from tabletopic.compaction.manifests import MERGE_ID_KEY
    from tabletopic.compaction.rewrite import COMPACTION_ID_KEY
    from tabletopic.offsets_admin import RESET_KEY
    from tabletopic.replay import REPLAY_ID_KEY

    assert {COMMIT_ID_KEY, WRITER_ID_KEY, RESET_KEY, COMPACTION_ID_KEY, MERGE_ID_KEY, REPLAY_ID_KEY,
            FREEZE_SUMMARY_KEY, CARRIED_FROM_KEY} == PER_SNAPSHOT_KEYS
    assert is_state_key(offsets_key("g")) and is_state_key(NEWEST_RECORD_KEY) and is_state_key(topic_ids_key("g"))
    assert is_state_key(PROJECTION_HASH_KEY)


class CatalogWithDeleteMeanwhile:
    """The catalog as compaction sees it, with Spark's merge-on-read DELETE landing right after it planned."""

    def __init__(self, catalog, positions):
        self._catalog, self._positions, self.deleted_from = catalog, positions, None

    def load_table(self, identifier):
        table = self._catalog.load_table(identifier)
        if self.deleted_from is None:
            self.deleted_from = min((task.file for task in table.scan().plan_files()), key=lambda f: f.file_path)
            commit_position_delete(self._catalog.load_table(identifier), self.deleted_from, self._positions)
        return table


def commit_position_delete(table, data_file, positions):
    """A file-scoped position delete file for rows of `data_file`, in a delete manifest, as Spark writes them."""
    delete = position_delete_file(table, data_file.file_path, positions, data_file.partition, data_file.spec_id)
    commit_upsert(table, [], [delete], {})  # a `delete` snapshot of one delete manifest


def test_compaction_abandons_when_rows_of_a_file_it_replaces_are_deleted_meanwhile(catalog):
    write_commits(catalog, 6)
    meanwhile = CatalogWithDeleteMeanwhile(catalog, positions=[0, 1, 2])
    result = compact(meanwhile, "ns.t", target_bytes=64 << 20)
    table = catalog.load_table("ns.t")
    assert table.scan().count() == 297  # the delete applies (readers see it) ...
    assert result.abandoned and table.current_snapshot().summary.operation.value == "delete"  # ... and stays so
    again = compact(catalog, "ns.t", target_bytes=64 << 20)  # the next run reads the files with the delete
    assert not again.abandoned and again.files_removed == 6
    assert catalog.load_table("ns.t").scan().count() == 297


class CatalogWithCompactionMeanwhile:
    """The catalog as one compaction sees it, with another compaction landing right after it planned."""

    def __init__(self, catalog):
        self._catalog, self.other = catalog, None

    def load_table(self, identifier):
        table = self._catalog.load_table(identifier)
        if self.other is None:
            self.other = compact(self._catalog, identifier, target_bytes=64 << 20)
        return table


def test_a_compaction_whose_files_another_compaction_took_is_abandoned(catalog):
    write_commits(catalog, 6)
    meanwhile = CatalogWithCompactionMeanwhile(catalog)
    result = compact(meanwhile, "ns.t", target_bytes=64 << 20)
    assert meanwhile.other.files_removed == 6 and result.abandoned and result.attempts == 2  # refused on the reload
    table = catalog.load_table("ns.t")
    assert table.scan().count() == 300 and len(table.inspect.files()) == 1


class CountingIO:
    """A table's FileIO that counts the manifest files read through it (manifest lists aside)."""

    def __init__(self, io):
        self._io, self.manifests_read = io, 0

    def new_input(self, location):
        name = location.rsplit("/", 1)[-1]
        if name.endswith(".avro") and not name.startswith("snap-"):
            self.manifests_read += 1
        return self._io.new_input(location)

    def __getattr__(self, name):
        return getattr(self._io, name)


class CatalogWithAppendsBetweenAttempts:
    """The catalog as a compaction sees it while a writer commits right after each of its first `appends`
    loads of the table, so each of its first `appends` attempts meets a newer table; counts the manifests
    read through each loaded table."""

    def __init__(self, catalog, sink, appends, first_offset):
        self._catalog, self._sink, self._left, self._next = catalog, sink, appends, first_offset
        self.reads: list[CountingIO] = []

    def load_table(self, identifier):
        from pyiceberg.table import Table

        table = self._catalog.load_table(identifier)
        if self._left > 0:
            write_more(self._sink, self._next)
            self._next += 50
            self._left -= 1
        io = CountingIO(table.io)
        self.reads.append(io)
        return Table(table.name(), table.metadata, table.metadata_location, io, self._catalog)


def test_appends_between_attempts_a_retry_reads_only_what_they_added_and_lands_with_every_row_once(catalog):
    sink = write_commits(catalog, 12)  # offsets 0..599 of partition 0, one manifest per commit
    busy = CatalogWithAppendsBetweenAttempts(catalog, sink, appends=5, first_offset=600)
    result = compact(busy, "ns.t", target_bytes=64 << 20)
    assert not result.abandoned and result.attempts == 6 and result.files_removed == 12
    # The plan and the first attempt read the table's manifests; a retry reads none: the writer's
    # appends only added manifests of new files, and what the first attempt wrote is reused.
    assert [io.manifests_read for io in busy.reads[1:-1]] == [0] * 5
    table = catalog.load_table("ns.t")
    assert table.current_snapshot().summary.operation.value == "replace"
    assert table.current_snapshot().summary["deleted-data-files"] == "12"
    assert len(table.inspect.files()) == 1 + 5  # the compacted file and the five appended while it retried
    rows = table.scan().to_arrow()
    assert sorted(rows["n"].to_pylist()) == list(range(850))  # every row once
    assert sorted(rows["_kafka_offset"].to_pylist()) == list(range(850))
    assert rows["k"].to_pylist() == ["ab"[n % 2] if n < 600 else "a" for n in rows["n"].to_pylist()]  # values intact
    assert table_offsets(table, "g") == {("topic", 0): 850}  # the replace hides no writer's offsets
    assert sink.start_offsets([("topic", 0)]) == {("topic", 0): 850}
    assert compact(catalog, "ns.t", target_bytes=64 << 20).files_removed == 6


class CatalogWithOneFileTakenMeanwhile:
    """The catalog as a compaction sees it, with someone removing one data file of partition k=a (and so
    rewriting the manifest that also lists a file of k=b) and a writer appending, right after it planned."""

    def __init__(self, catalog, sink):
        self._catalog, self._sink, self.taken = catalog, sink, None

    def load_table(self, identifier):
        table = self._catalog.load_table(identifier)
        if self.taken is None:
            self.taken = min((task.file for task in table.scan().plan_files() if task.file.partition[0] == "a"),
                             key=lambda f: f.file_path)
            commit_replace(self._catalog.load_table(identifier), [self.taken], [], {})
            write_more(self._sink, 600)
        return table


def test_a_group_whose_file_someone_removed_is_abandoned_and_the_other_groups_land(catalog):
    import pyarrow.parquet as pq

    sink = write_commits(catalog, 12, partition_by=["k"])  # two groups: k=a (even n), k=b (odd n)
    meanwhile = CatalogWithOneFileTakenMeanwhile(catalog, sink)
    result = compact(meanwhile, "ns.t", target_bytes=64 << 20)
    assert not result.abandoned and result.groups == 2 and result.groups_abandoned == 1
    assert result.files_removed == 12 and result.files_added == 1 and result.attempts == 2
    table = catalog.load_table("ns.t")
    taken = set(pq.read_table(meanwhile.taken.file_path.removeprefix("file://"))["n"].to_pylist())
    files = {task.file.file_path: task.file.partition[0] for task in table.scan().plan_files()}
    assert meanwhile.taken.file_path not in files  # never brought back
    assert sorted(files.values()) == ["a"] * 12 + ["b"]  # k=a's other 11 as they were and the append's; k=b compacted
    assert sorted(table.scan().to_arrow()["n"].to_pylist()) == sorted(set(range(650)) - taken)
    assert sink.start_offsets([("topic", 0)]) == {("topic", 0): 650}


class CatalogLosingTheAnswer:
    """A catalog whose first commit lands but answers with an unknown state (a lost response)."""

    def __init__(self, catalog):
        self._catalog, self.lost = catalog, 0

    def load_table(self, identifier):
        from pyiceberg.table import Table

        table = self._catalog.load_table(identifier)
        return Table(table.name(), table.metadata, table.metadata_location, table.io, self)

    def commit_table(self, table, requirements, updates):
        from pyiceberg.exceptions import CommitStateUnknownException

        response = self._catalog.commit_table(table, requirements, updates)
        if not self.lost:
            self.lost += 1
            raise CommitStateUnknownException("the response was lost")
        return response

    def __getattr__(self, name):
        return getattr(self._catalog, name)


def test_a_replace_whose_answer_was_lost_is_found_landed_and_neither_repeated_nor_cleaned_up(catalog):
    import os

    from tabletopic.compaction.files import referenced_files

    sink = write_commits(catalog, 6)
    result = compact(CatalogLosingTheAnswer(catalog), "ns.t", target_bytes=64 << 20)
    assert not result.abandoned and result.attempts == 1 and result.files_removed == 6
    table = catalog.load_table("ns.t")
    assert [s.summary.operation.value for s in table.snapshots()].count("replace") == 1
    assert all(os.path.exists(p.removeprefix("file://")) for p in referenced_files(table))
    assert sorted(table.scan().to_arrow()["n"].to_pylist()) == list(range(300))
    assert sink.start_offsets([("topic", 0)]) == {("topic", 0): 300}


def test_expiry_beside_a_busy_writer_keeps_an_old_groups_key_and_every_row(catalog):
    import time

    write_commits(catalog, 1, kafka_partition=1, group="g.backfill")  # a backfill, long finished: its key is carried
    sink = write_commits(catalog, 4, group="g")
    busy = CatalogWithAppendsBetweenAttempts(catalog, sink, appends=12, first_offset=200)
    result = expire(busy, "ns.t", older_than_ms=int(time.time() * 1000) + 60_000, keep_last=2)
    # The writer's commits repeated the backfill's key: no carry to lose to the writer's appends.
    assert result.carried == 0 and result.expired >= 3
    table = catalog.load_table("ns.t")
    written = table_offsets(table, "g")[("topic", 0)]  # 200, and 50 more per append the expiry lost to
    assert written >= 200 and len(table.metadata.snapshots) <= (written - 200) // 50 + 2
    assert sorted(table.scan().to_arrow()["n"].to_pylist()) == sorted([*range(50), *range(written)])
    assert table_offsets(table, "g.backfill") == {("topic", 1): 50}


def test_a_partition_spec_changed_between_attempts_keeps_the_new_files_under_the_spec_they_were_written_by(catalog):
    from pyiceberg.expressions import AlwaysTrue
    from pyiceberg.io.pyarrow import ArrowScan

    from tabletopic.commit.committer import write_data_files
    from tabletopic.compaction.plan import FileInfo, bin_pack
    from tabletopic.compaction.replace import Group, Replacement

    def _read(table, tasks):
        return ArrowScan(table.metadata, table.io, table.schema(), AlwaysTrue()).to_table(tasks)

    write_commits(catalog, 4)  # unpartitioned
    planned = catalog.load_table("ns.t")
    tasks = {task.file.file_path: task for task in planned.scan().plan_files()}
    infos = [FileInfo(path, (task.file.spec_id, repr(task.file.partition)), task.file.file_size_in_bytes)
             for path, task in tasks.items()]
    groups = []
    for packed in bin_pack(infos, 64 << 20, 2):
        rows = _read(planned, [tasks[info.path] for info in packed])
        groups.append(Group(packed, write_data_files(planned, rows), rows.num_rows))
    replacement = Replacement(planned, groups, {})
    replacement.rebase(planned)
    with catalog.load_table("ns.t").update_spec() as update:  # an ALTER TABLE between two attempts
        update.add_identity("k")
    current = catalog.load_table("ns.t")
    assert replacement.rebase(current) == []
    replacement.commit(current)
    after = catalog.load_table("ns.t")
    added = [manifest.partition_spec_id for manifest in after.current_snapshot().manifests(after.io)
             if manifest.added_files_count]
    assert added == [planned.metadata.default_spec_id]
    assert after.scan().count() == 200
    assert after.scan(row_filter="k == 'a'").to_arrow().num_rows == 100


def test_a_catalog_that_serves_only_the_current_snapshot_still_gives_every_groups_offsets(catalog):
    """Nessie's REST catalog serves the current snapshot without its ancestors: a compaction's snapshot,
    a manifest merge's or another group's commit on top must not hide a writer's offsets (a writer that
    found none would read its topic again from the start)."""
    from tabletopic.commit.committer import without_history
    from tabletopic.compaction.manifests import merge_manifests

    write_commits(catalog, 1, kafka_partition=1, group="g.backfill")
    write_commits(catalog, 3, group="g")
    compact(catalog, "ns.t", target_bytes=64 << 20)
    merge_manifests(catalog, "ns.t", min_manifests=1)
    table = catalog.load_table("ns.t")
    current_only = without_history(table)
    assert len(current_only.metadata.snapshots) == 1
    for group, expected in (("g", {("topic", 0): 150}), ("g.backfill", {("topic", 1): 50})):
        assert table_offsets(table, group) == expected
        assert table_offsets(current_only, group) == expected, group


def test_the_last_commit_status_shows_is_the_writers_not_a_compactions_that_repeats_its_offsets(catalog):
    from tabletopic.commit.offsets import offsets_key
    from tabletopic.status import last_moved

    write_commits(catalog, 3, group="g")
    written = catalog.load_table("ns.t").current_snapshot()
    compact(catalog, "ns.t", target_bytes=64 << 20)
    table = catalog.load_table("ns.t")
    assert table.current_snapshot().summary.operation.value == "replace"
    assert offsets_key("g") in table.current_snapshot().summary.additional_properties
    assert last_moved(table, offsets_key("g")).snapshot_id == written.snapshot_id
    assert last_moved(table, offsets_key("other")) is None
