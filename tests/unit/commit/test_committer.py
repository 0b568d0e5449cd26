"""The committer against a real catalog (pyiceberg's SqlCatalog on SQLite, local warehouse)."""

import pyarrow as pa
import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import CommitFailedException

from tabletopic.catalog.tables import create_table
from tabletopic.commit.buffer import PartitionBuffer
from tabletopic.commit.committer import (
    CONFLICT_BACKOFF_STEPS,
    Committer,
    append_files,
    table_offsets,
    write_data_files,
)
from tabletopic.commit.offsets import COMMIT_ID_KEY, WRITER_ID_KEY
from tabletopic.core.backoff import RetryPolicy

SCHEMA = pa.schema([pa.field("p", pa.int32()), pa.field("o", pa.int64())])


@pytest.fixture
def catalog(tmp_path):
    catalog = SqlCatalog("test", uri=f"sqlite:///{tmp_path}/catalog.db", warehouse=f"file://{tmp_path}")
    create_table(catalog, "ns.t", SCHEMA, [], {})
    return catalog


def part(partition: int, first: int, last: int) -> PartitionBuffer:
    rows = pa.table({"p": pa.array([partition] * (last - first + 1), pa.int32()),
                     "o": pa.array(range(first, last + 1), pa.int64())})
    return PartitionBuffer(first, last, [rows], rows.nbytes)



def committer(catalog, writer: str) -> Committer:
    return Committer(catalog, "ns.t", "g", writer, RetryPolicy(initial_backoff_s=0.001), sleep=lambda _: None)


def rows_in(catalog) -> list[tuple[int, int]]:
    table = catalog.load_table("ns.t").scan().to_arrow()
    return sorted(zip(table["p"].to_pylist(), table["o"].to_pylist(), strict=True))


def test_a_commit_carries_cumulative_offsets_commit_id_and_writer(catalog):
    a = committer(catalog, "writer-a")
    a.commit({("t", 0): part(0, 0, 9)})
    outcome = a.commit({("t", 1): part(1, 0, 4)})
    table = catalog.load_table("ns.t")
    assert table_offsets(table, "g") == {("t", 0): 10, ("t", 1): 5}
    summary = table.current_snapshot().summary
    assert summary[WRITER_ID_KEY] == "writer-a" and summary[COMMIT_ID_KEY]
    assert outcome.committed == {("t", 1): 5}


def test_pyiceberg_never_retries_our_appends_whatever_the_table_property_says(catalog):
    a = committer(catalog, "a")
    a.commit({("t", 0): part(0, 0, 9)})
    with catalog.load_table("ns.t").transaction() as transaction:
        transaction.set_properties({"commit.retry.num-retries": "4"})  # as Spark users would want it
    stale = catalog.load_table("ns.t")
    a.commit({("t", 0): part(0, 10, 19)})
    # pyiceberg would re-apply this on the new base with an offsets map computed for the old one.
    with pytest.raises(CommitFailedException):
        append_files(stale, write_data_files(stale, part(0, 20, 29).rows()), {})
    assert catalog.load_table("ns.t").properties["commit.retry.num-retries"] == "4"


def test_a_replayed_batch_is_dropped_and_an_overlapping_one_is_fenced(catalog):
    a, b = committer(catalog, "a"), committer(catalog, "b")
    a.commit({("t", 0): part(0, 0, 9), ("t", 1): part(1, 0, 9)})
    outcome = b.commit({("t", 0): part(0, 0, 9), ("t", 1): part(1, 5, 14), ("t", 2): part(2, 0, 0)})
    assert outcome.replayed == {("t", 0): 10}
    assert outcome.fenced == {("t", 1): 10}
    assert outcome.committed == {("t", 2): 1}
    assert rows_in(catalog) == sorted([(0, o) for o in range(10)] + [(1, o) for o in range(10)] + [(2, 0)])
    assert table_offsets(catalog.load_table("ns.t"), "g") == {("t", 0): 10, ("t", 1): 10, ("t", 2): 1}


def test_a_gap_commits(catalog):
    a = committer(catalog, "a")
    a.commit({("t", 0): part(0, 0, 9)})
    assert a.commit({("t", 0): part(0, 15, 20)}).committed == {("t", 0): 21}


def test_a_stale_base_fails_instead_of_appending_blindly(catalog):
    stale = catalog.load_table("ns.t")
    committer(catalog, "a").commit({("t", 0): part(0, 0, 9)})
    files = write_data_files(stale, part(0, 0, 9).rows())
    with pytest.raises(CommitFailedException):
        append_files(stale, files, {"x": "y"})
    assert len(rows_in(catalog)) == 10


class RacingCommitter(Committer):
    """Lets another writer commit the same partition between our reload and our append, once."""

    def __init__(self, catalog, rival_batch):
        super().__init__(catalog, "ns.t", "g", "racer", RetryPolicy(initial_backoff_s=0.001), sleep=lambda _: None)
        self._rival_batch = rival_batch

    def load(self):
        table = super().load()
        if self._rival_batch is not None:
            committer(self.catalog, "rival").commit(self._rival_batch)
            self._rival_batch = None
        return table


def test_a_conflict_reloads_and_judges_again(catalog):
    racer = RacingCommitter(catalog, {("t", 0): part(0, 0, 4)})
    outcome = racer.commit({("t", 0): part(0, 0, 9), ("t", 1): part(1, 0, 2)})
    assert outcome.attempts == 2
    assert outcome.fenced == {("t", 0): 5}
    assert outcome.committed == {("t", 1): 3}
    assert rows_in(catalog) == sorted([(0, o) for o in range(5)] + [(1, o) for o in range(3)])


class SpecChangingCommitter(Committer):
    """Between our first load and our append, another writer appends and partitions the table by `p`
    (a concurrent ALTER TABLE ... ADD PARTITION FIELD from Spark or pyiceberg)."""

    def __init__(self, catalog):
        super().__init__(catalog, "ns.t", "g", "racer", RetryPolicy(initial_backoff_s=0.001), sleep=lambda _: None)
        self._altered = False

    def load(self):
        table = super().load()
        if not self._altered:
            self._altered = True
            committer(self.catalog, "rival").commit({("t", 9): part(9, 0, 0)})
            with self.catalog.load_table("ns.t").update_spec() as spec:
                spec.add_identity("p")
        return table


def test_files_written_before_a_partition_spec_change_are_written_again_for_the_new_spec(catalog):
    outcome = SpecChangingCommitter(catalog).commit({("t", 0): part(0, 0, 4), ("t", 1): part(1, 0, 2)})
    assert outcome.attempts == 2 and outcome.committed == {("t", 0): 5, ("t", 1): 3}
    table = catalog.load_table("ns.t")
    snapshot = table.current_snapshot()
    ours = [(manifest.partition_spec_id, entry.data_file.spec_id, entry.data_file.partition[0])
            for manifest in snapshot.manifests(table.io)
            for entry in manifest.fetch_manifest_entry(table.io) if entry.snapshot_id == snapshot.snapshot_id]
    assert sorted(ours) == [(1, 1, 0), (1, 1, 1)]
    assert len(table.scan(row_filter="p == 1").to_arrow()) == 3  # pruning by the new spec finds them
    assert rows_in(catalog) == sorted([(0, o) for o in range(5)] + [(1, o) for o in range(3)] + [(9, 0)])


def test_a_retry_looks_for_its_commit_only_among_the_snapshots_since_it_began(catalog, monkeypatch):
    from pyiceberg.table import Table

    a = committer(catalog, "a")
    for offset in range(40):
        a.commit({("t", 0): part(0, offset, offset)})
    history = {s.snapshot_id for s in catalog.load_table("ns.t").snapshots()}
    base = catalog.load_table("ns.t").current_snapshot().snapshot_id
    lookups: list[int] = []
    original = Table.snapshot_by_id

    def counting(self, snapshot_id):
        lookups.append(snapshot_id)
        return original(self, snapshot_id)

    monkeypatch.setattr(Table, "snapshot_by_id", counting)
    outcome = RacingCommitter(catalog, {("t", 1): part(1, 0, 0)}).commit({("t", 2): part(2, 0, 0)})
    assert outcome.attempts == 2 and outcome.committed == {("t", 2): 1}
    # Of the 40 snapshots before it began, only the one it started from was looked at.
    assert set(lookups) & history == {base}


def test_a_commit_of_unknown_state_that_landed_is_found_and_not_repeated(catalog, monkeypatch):
    from pyiceberg.exceptions import CommitStateUnknownException

    from tabletopic.commit import committer as committer_module

    a = committer(catalog, "a")
    for offset in range(5):
        a.commit({("t", 0): part(0, offset, offset)})
    calls = []
    real_append = committer_module.append_files

    def lands_then_times_out(table, files, properties):
        calls.append(real_append(table, files, properties))
        if len(calls) == 1:
            raise CommitStateUnknownException("the catalog timed out after applying the commit")
        return calls[-1]

    monkeypatch.setattr(committer_module, "append_files", lands_then_times_out)
    outcome = a.commit({("t", 1): part(1, 0, 3)})
    assert outcome.attempts == 2 and len(calls) == 1
    assert outcome.committed == {("t", 1): 4}  # reported as committed: lag, group offsets and metrics follow
    assert rows_in(catalog) == sorted([(0, o) for o in range(5)] + [(1, o) for o in range(4)])


class OftenBeatenCommitter(Committer):
    """Another writer commits between our reload and our append on each of the first `times` attempts."""

    def __init__(self, catalog, times):
        self.sleeps: list[float] = []
        super().__init__(catalog, "ns.t", "g", "slow", RetryPolicy(), sleep=self.sleeps.append)
        self._times, self._rival_offset = times, 0

    def load(self):
        table = super().load()
        if self._times > 0:
            self._times -= 1
            committer(self.catalog, "rival").commit({("t", 9): part(9, self._rival_offset, self._rival_offset)})
            self._rival_offset += 1
        return table


def test_a_writer_that_loses_many_races_in_a_row_retries_at_a_short_pace(catalog):
    beaten = OftenBeatenCommitter(catalog, times=12)
    outcome = beaten.commit({("t", 0): part(0, 0, 9)})
    assert outcome.attempts == 13 and outcome.conflicts == 12 and outcome.committed == {("t", 0): 10}
    policy = RetryPolicy()
    assert max(beaten.sleeps) <= policy.initial_backoff_s * 2 ** (CONFLICT_BACKOFF_STEPS - 1)  # not 10 s
    assert policy.backoff(12) > 1.0  # what an outage of 12 attempts waits


def test_a_table_reset_below_what_the_writer_read_fences_it_back_to_the_reset_offset(catalog):
    """`offsets reset` while a writer runs: its next batch starts past the reset offset, which would look
    like a legal gap and skip the range the reset asked to read again."""
    from tabletopic.offsets_admin import reset

    a = committer(catalog, "a")
    a.commit({("t", 0): part(0, 0, 9)})
    reset(catalog, "ns.t", "g", {("t", 0): 5})
    outcome = a.commit({("t", 0): part(0, 10, 19)})
    assert outcome.fenced == {("t", 0): 5} and not outcome.committed
    assert table_offsets(catalog.load_table("ns.t"), "g") == {("t", 0): 5}
    outcome = a.commit({("t", 0): part(0, 5, 19)})  # read again from the reset offset
    assert outcome.committed == {("t", 0): 20}
    # Another partition, and a writer that never saw the old offset, are judged as before.
    assert committer(catalog, "b").commit({("t", 1): part(1, 3, 4)}).committed == {("t", 1): 5}
