"""Compaction against a real SQLite catalog and local files."""

import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import CommitFailedException

from tabletopic.commit.retry import RetryPolicy
from tabletopic.compaction.replace import commit_replace
from tabletopic.compaction.rewrite import compact
from tabletopic.config import TableConfig
from tabletopic.kafka.records import RecordChunk
from tabletopic.sink import TableSink


@pytest.fixture
def catalog(tmp_path):
    return SqlCatalog("test", uri=f"sqlite:///{tmp_path}/catalog.db", warehouse=f"file://{tmp_path}")


def write_commits(catalog, commits, per_commit=50, partition_by=(), kafka_partition=0):
    sink = TableSink(TableConfig(table="ns.t", topic="topic", partition_by=list(partition_by)), catalog, "g", "w",
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

    from tabletopic.compaction.expire import expire
    from tabletopic.compaction.files import referenced_files

    sink = write_commits(catalog, 6)
    compact(catalog, "ns.t", target_bytes=64 << 20)
    table = catalog.load_table("ns.t")
    old_data = {task.file.file_path for task in table.scan(snapshot_id=table.metadata.snapshots[-2].snapshot_id)
                .plan_files()}
    now_ms = int(time.time() * 1000) + 1000
    # The newest snapshot with offsets is the compaction's parent: it, and so the old files, must stay.
    expire(catalog, "ns.t", older_than_ms=now_ms, keep_last=1)
    table = catalog.load_table("ns.t")
    assert [s.summary.operation.value for s in table.metadata.snapshots] == ["append", "replace"]
    assert all(os.path.exists(p.removeprefix("file://")) for p in old_data)

    write_more(sink, 300)  # the writer commits after the compaction: now the old chain can go
    result = expire(catalog, "ns.t", older_than_ms=int(time.time() * 1000) + 1000, keep_last=1)
    table = catalog.load_table("ns.t")
    assert [s.summary.operation.value for s in table.metadata.snapshots] == ["append"]
    assert result.expired == 2 and result.files_deleted > len(old_data)
    assert not any(os.path.exists(p.removeprefix("file://")) for p in old_data)
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
