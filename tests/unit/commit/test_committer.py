"""The committer against a real catalog (pyiceberg's SqlCatalog on SQLite, local warehouse)."""

import pyarrow as pa
import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import CommitFailedException

from tabletopic.catalog.tables import create_table
from tabletopic.commit.buffer import PartitionBuffer
from tabletopic.commit.committer import Committer, append_files, table_offsets, write_data_files
from tabletopic.commit.offsets import COMMIT_ID_KEY, WRITER_ID_KEY
from tabletopic.commit.retry import RetryPolicy

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
