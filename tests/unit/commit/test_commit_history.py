"""An append's cost must not grow with the table's history (issue 14's soak): pyiceberg's transaction
deep-copies the metadata it is given each time it reads it, so our appends give it only what a fast
append needs. Sizes are asserted, never times."""

from pathlib import Path

import pyarrow as pa
import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.table import Transaction

from tabletopic.catalog.tables import create_table
from tabletopic.commit.buffer import PartitionBuffer
from tabletopic.commit.committer import Committer, table_offsets

SCHEMA = pa.schema([pa.field("p", pa.int32()), pa.field("o", pa.int64())])
HISTORY = 30


@pytest.fixture
def catalog(tmp_path):
    catalog = SqlCatalog("test", uri=f"sqlite:///{tmp_path}/catalog.db", warehouse=f"file://{tmp_path}")
    create_table(catalog, "ns.t", SCHEMA, [], {})
    return catalog


def part(first: int, count: int) -> PartitionBuffer:
    rows = pa.table({"p": pa.array([0] * count, pa.int32()), "o": pa.array(range(first, first + count), pa.int64())})
    return PartitionBuffer(first, first + count - 1, [rows], rows.nbytes)


@pytest.fixture
def snapshots_seen_by_transactions(monkeypatch):
    """How many snapshots the metadata held each time a transaction read it (and deep-copied it)."""
    seen: list[int] = []
    original = Transaction.table_metadata

    def spying(self):
        seen.append(len(self._table.metadata.snapshots))
        return original.fget(self)

    monkeypatch.setattr(Transaction, "table_metadata", property(spying))
    return seen


def commit_history(catalog, writer: Committer, commits: int) -> None:
    for c in range(commits):
        writer.commit({("t", 0): part(c * 2, 2)})


def test_an_append_copies_one_snapshot_whatever_the_history(catalog, snapshots_seen_by_transactions):
    writer = Committer(catalog, "ns.t", "g", "w")
    commit_history(catalog, writer, HISTORY)
    snapshots_seen_by_transactions.clear()

    writer.commit({("t", 0): part(HISTORY * 2, 2)})

    assert snapshots_seen_by_transactions  # the spy saw the append's transaction
    assert max(snapshots_seen_by_transactions) <= 2  # the parent (and the new snapshot once added), not 30


def test_the_history_the_append_leaves_out_stays_in_the_table(catalog):
    writer = Committer(catalog, "ns.t", "g", "w")
    commit_history(catalog, writer, HISTORY)
    before = catalog.load_table("ns.t")
    before.manage_snapshots().create_tag(before.history()[3].snapshot_id, "old").commit()
    before = catalog.load_table("ns.t")

    outcome = writer.commit({("t", 0): part(HISTORY * 2, 2)})

    after = catalog.load_table("ns.t")
    assert [s.snapshot_id for s in after.snapshots()] == [*(s.snapshot_id for s in before.snapshots()),
                                                           outcome.snapshot_id]
    assert [e.snapshot_id for e in after.history()] == [*(e.snapshot_id for e in before.history()),
                                                         outcome.snapshot_id]
    assert [e.metadata_file for e in after.metadata.metadata_log][-1] == before.metadata_location
    assert after.current_snapshot().parent_snapshot_id == before.current_snapshot().snapshot_id
    assert after.metadata.refs["old"] == before.metadata.refs["old"]
    assert after.current_snapshot().sequence_number == before.metadata.last_sequence_number + 1
    assert table_offsets(after, "g") == {("t", 0): HISTORY * 2 + 2}
    assert after.scan().to_arrow().num_rows == HISTORY * 2 + 2


def test_old_metadata_files_are_still_deleted_after_each_append(tmp_path):
    catalog = SqlCatalog("test", uri=f"sqlite:///{tmp_path}/catalog.db", warehouse=f"file://{tmp_path}")
    create_table(catalog, "ns.t", SCHEMA, [], {"write.metadata.previous-versions-max": "5"})
    writer = Committer(catalog, "ns.t", "g", "w")

    commit_history(catalog, writer, HISTORY)

    location = Path(catalog.load_table("ns.t").location().removeprefix("file://"))
    metadata_files = list((location / "metadata").glob("*.metadata.json"))
    assert len(metadata_files) <= 5 + 1  # the previous five and the current one, not one per commit
