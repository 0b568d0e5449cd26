"""What the sink split, the pyiceberg seam and the replace made from the base snapshot alone must keep,
pinned where no other test did: a replace keeps the history and totals, its retries keep one snapshot id
and clean up the lists they wrote, and a dead-letter flood after a schema change keeps the rows before it."""

import os

import pytest
from pyiceberg.catalog.sql import SqlCatalog

from tabletopic.commit.committer import table_offsets
from tabletopic.compaction import replace as replace_module
from tabletopic.compaction.manifests import merge_manifests
from tabletopic.compaction.rewrite import compact
from tabletopic.config import TableConfig
from tabletopic.core.backoff import RetryPolicy
from tabletopic.core.records import RecordChunk
from tabletopic.deadletter.flood import DeadLetterFlood
from tabletopic.deadletter.rows import dlq_identifier
from tabletopic.sink import TableSink


@pytest.fixture
def catalog(tmp_path):
    return SqlCatalog("test", uri=f"sqlite:///{tmp_path}/catalog.db", warehouse=f"file://{tmp_path}")


def chunk(values, first=0, partition=0):
    n = len(values)
    return RecordChunk("topic", partition, list(range(first, first + n)), [None] * n, values, [0] * n, [None] * n)


def writer(catalog, **table):
    return TableSink(TableConfig(**{"table": "ns.t", "topic": "topic", **table}), catalog, "g", "w", RetryPolicy())


def write_commits(catalog, commits, per_commit=20):
    sink = writer(catalog)
    for c in range(commits):
        first = c * per_commit
        sink.ingest(chunk([b'{"n": %d}' % n for n in range(first, first + per_commit)], first=first), now=0.0)
        sink.flush()
    return sink


def totals(snapshot):
    return {key: int(snapshot.summary[key]) for key in ("total-records", "total-data-files")}


# -- 5dbb64c / c3b9438: the replace made from the base snapshot alone ------------------------------


def test_a_compaction_on_a_long_history_sums_up_from_its_parent_and_the_catalog_keeps_the_history(catalog):
    write_commits(catalog, 8)
    before = catalog.load_table("ns.t")
    head = before.current_snapshot()
    assert len(before.metadata.snapshots) == 8 and before.metadata.snapshot_log  # without_history trims here
    result = compact(catalog, "ns.t", target_bytes=64 << 20)
    after = catalog.load_table("ns.t")
    snapshot = after.current_snapshot()
    assert snapshot.summary.operation.value == "replace" and snapshot.parent_snapshot_id == head.snapshot_id
    assert totals(snapshot) == {"total-records": 160,
                                "total-data-files": totals(head)["total-data-files"] - result.files_removed
                                + result.files_added}
    assert {s.snapshot_id for s in before.metadata.snapshots} < {s.snapshot_id for s in after.metadata.snapshots}
    assert len(after.metadata.snapshot_log) == len(before.metadata.snapshot_log) + 1
    assert table_offsets(after, "g") == {("topic", 0): 160}


def test_a_manifest_merge_on_a_long_history_keeps_the_totals_and_the_history(catalog):
    write_commits(catalog, 8)
    before = catalog.load_table("ns.t")
    assert merge_manifests(catalog, "ns.t", min_manifests=2) == 8
    after = catalog.load_table("ns.t")
    snapshot = after.current_snapshot()
    assert snapshot.summary.operation.value == "replace"
    assert snapshot.parent_snapshot_id == before.current_snapshot().snapshot_id
    assert totals(snapshot) == totals(before.current_snapshot()) == {"total-records": 160, "total-data-files": 8}
    assert {s.snapshot_id for s in before.metadata.snapshots} < {s.snapshot_id for s in after.metadata.snapshots}
    assert len(after.metadata.snapshot_log) == len(before.metadata.snapshot_log) + 1
    assert sorted(after.scan().to_arrow()["n"].to_pylist()) == list(range(160))


class CatalogWithOneAppendMeanwhile:
    """A compaction's catalog with a writer appending right after the plan: its first attempt fails."""

    def __init__(self, catalog, sink):
        self._catalog, self._sink, self._appended = catalog, sink, False

    def load_table(self, identifier):
        table = self._catalog.load_table(identifier)
        if not self._appended:
            self._appended = True
            self._sink.ingest(chunk([b'{"n": 160}'], first=160), now=0.0)
            self._sink.flush()
        return table


def test_a_retried_replace_keeps_its_snapshot_id_and_deletes_the_manifest_list_of_the_failed_attempt(
        catalog, monkeypatch):
    sink = write_commits(catalog, 4)
    attempts = []  # (snapshot id staged, manifest lists it wrote, whether the replacement recorded them first)

    class Recording(replace_module.ReplaceSnapshot):
        def commit(self):
            attempts.append((self._producer._snapshot_id, self.manifest_lists))
            super().commit()

    monkeypatch.setattr(replace_module, "ReplaceSnapshot", Recording)
    result = compact(CatalogWithOneAppendMeanwhile(catalog, sink), "ns.t", target_bytes=64 << 20)
    table = catalog.load_table("ns.t")
    snapshot = table.current_snapshot()
    assert not result.abandoned and result.attempts == 2 and len(attempts) == 2
    assert attempts[0][0] == attempts[1][0] == snapshot.snapshot_id  # fixed across attempts
    (failed,), (landed,) = attempts[0][1], attempts[1][1]
    assert landed == snapshot.manifest_list and os.path.exists(landed.removeprefix("file://"))
    assert not os.path.exists(failed.removeprefix("file://"))  # recorded before the commit, deleted after
    assert totals(snapshot) == {"total-records": 81, "total-data-files": 2}


# -- 6dae13b: the sink's split ------------------------------------------------------------------------


def test_a_flood_after_a_schema_change_keeps_the_rows_before_it_in_the_new_schema_and_the_letters_first(catalog):
    """State the split spread over objects: the shape's schema, the writer's buffer conformed to it, the
    rate limit's window; the dead letters still go before the rows, and the flood names the right count."""
    sink = writer(catalog, max_dead_letters_per_minute=2)
    sink.ingest(chunk([b'{"a": 0}', b"bad0"]), now=0.0)  # one dead letter in the window
    with pytest.raises(DeadLetterFlood, match=r"3 dead letters .* offset 5"):
        sink.ingest(chunk([b'{"a": 1, "b": "x"}', b"bad1", b'{"a": 3}', b"bad2", b'{"a": 5}'], first=2), now=1.0)
    held = sink.buffer.partitions[("topic", 0)]
    assert (held.first, held.last) == (0, 4)
    assert held.rows()["b"].to_pylist() == [None, "x", None]  # the rows before the change, conformed to it
    letters = sink.dead_letters.partitions[("topic", 0)]
    assert (letters.first, letters.last, letters.rows().num_rows) == (0, 4, 2)
    assert sink.bad_records == {"malformed_json": 2}
    outcome = sink.flush()
    assert outcome.committed == {("topic", 0): 5}
    dlq = catalog.load_table(dlq_identifier("ns.t"))
    table = catalog.load_table("ns.t")
    assert dlq.current_snapshot().timestamp_ms <= table.current_snapshot().timestamp_ms
    assert table_offsets(dlq, "g") == {("topic", 0): 5}
    assert sorted(table.scan().to_arrow()["a"].to_pylist()) == [0, 1, 3]
