"""Compaction and manifest merging of upsert tables (equality deletes), against a real SQLite catalog,
read back by tabletopic's delete-aware reader and by DuckDB (pyiceberg 0.12 refuses equality deletes)."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest
from pyiceberg.manifest import DataFile
from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC, PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.transforms import BucketTransform
from pyiceberg.types import LongType, NestedField, StringType

from tabletopic.catalog import reader
from tabletopic.commit.committer import append_files, write_data_files
from tabletopic.commit.upsert_files import commit_upsert, write_equality_deletes
from tabletopic.compaction import replace
from tabletopic.compaction.manifests import merge_manifests
from tabletopic.compaction.plan import DeleteInfo, FileInfo, compaction_groups, dangling_deletes, deletes_touching
from tabletopic.compaction.rewrite import compact
from tabletopic.compaction.scheduler import SmallFiles, TableState, due, small_files
from tabletopic.config import MaintenanceConfig
from tests.iceberg_fixtures import duckdb_with_iceberg, position_delete_file, sql_catalog

SCHEMA = Schema(NestedField(1, "id", LongType(), required=True), NestedField(2, "v", StringType(), required=False),
                identifier_field_ids=[1])
BUCKETED = PartitionSpec(PartitionField(source_id=1, field_id=1000, transform=BucketTransform(4), name="b"))
TARGET = 64 << 20


@pytest.fixture
def catalog(tmp_path):
    return sql_catalog(tmp_path)


@pytest.fixture(scope="module")
def duck():
    yield from duckdb_with_iceberg()


def create(catalog, spec=UNPARTITIONED_PARTITION_SPEC) -> Table:
    return catalog.create_table("ns.t", schema=SCHEMA, partition_spec=spec,
                                properties={"format-version": "2", "tabletopic.mode": "upsert"})


def upsert(catalog, changes: dict[int, str | None], model: dict[int, str] | None = None) -> None:
    """One upsert commit as the writer makes it: new rows for the values, a delete of every key touched."""
    table = catalog.load_table("ns.t")
    kept = {k: v for k, v in changes.items() if v is not None}
    data = write_data_files(table, pa.table({"id": list(kept), "v": list(kept.values())},
                                            schema=table.schema().as_arrow())) if kept else []
    deletes = write_equality_deletes(table, pa.table({"id": pa.array(list(changes), pa.int64())}), [1])
    commit_upsert(table, data, deletes, {})
    if model is not None:
        for key, value in changes.items():
            if value is None:
                model.pop(key, None)
            else:
                model[key] = value


def rows(table: Table) -> list[tuple]:
    got = reader.read(table)
    return sorted(zip(got["id"].to_pylist(), got["v"].to_pylist(), strict=True))


def duck_rows(duck, table: Table) -> list[tuple]:
    metadata = table.metadata_location.removeprefix("file://")
    return sorted(duck.execute(f"SELECT id, v FROM iceberg_scan('{metadata}')").fetchall())


def state(model: dict[int, str]) -> list[tuple]:
    return sorted(model.items())


def live_equality_deletes(table: Table) -> list[reader.LiveFile]:
    return reader.live_files(table).equality_deletes


class CatalogWithUpsertMeanwhile:
    """The catalog as a compaction sees it, with an upsert commit landing right after it planned (at S0)."""

    def __init__(self, catalog, changes, model):
        self._catalog, self._changes, self._model, self.done = catalog, changes, model, False

    def load_table(self, identifier):
        table = self._catalog.load_table(identifier)
        if not self.done:
            self.done = True
            upsert(self._catalog, self._changes, self._model)
        return table


# -- the race


@pytest.mark.parametrize("explicit_sequence_number", [True, False], ids=["starting-seq", "control-commit-seq"])
def test_an_upsert_committed_while_a_compaction_runs_is_neither_undone_nor_doubled(
        catalog, duck, monkeypatch, explicit_sequence_number):
    create(catalog)
    model: dict[int, str] = {}
    upsert(catalog, {1: "a", 2: "b", 3: "c"}, model)
    upsert(catalog, {4: "d", 5: "e"}, model)
    upsert(catalog, {1: "a1"}, model)
    if not explicit_sequence_number:
        # The control: new files get the commit's sequence number, as pyiceberg's producers give them.
        monkeypatch.setattr(replace, "added_entry", lambda snapshot_id, _, data_file: replace.ManifestEntry.from_args(
            status=replace.ManifestEntryStatus.ADDED, snapshot_id=snapshot_id, data_file=data_file))
    meanwhile = CatalogWithUpsertMeanwhile(catalog, {3: None, 2: "b2"}, model)
    result = compact(meanwhile, "ns.t", target_bytes=TARGET)
    assert result.attempts == 2 and not result.abandoned and result.files_removed == 3  # rebased, group kept
    table = catalog.load_table("ns.t")
    assert table.current_snapshot().summary.operation.value == "replace"
    if explicit_sequence_number:
        assert rows(table) == duck_rows(duck, table) == state(model) == [(1, "a1"), (2, "b2"), (4, "d"), (5, "e")]
        # The upsert's delete still applies (to the new files); the ones before it are gone.
        assert len(live_equality_deletes(table)) == 1
        added = [f for f in reader.live_files(table).data if f.file.file_path not in meanwhile_paths(table)]
        assert {f.data_sequence_number for f in added} == {3}  # S0's
    else:  # key 3 comes back and key 2 has two rows: what the explicit sequence number prevents
        assert rows(table) == duck_rows(duck, table) == [(1, "a1"), (2, "b"), (2, "b2"), (3, "c"), (4, "d"),
                                                         (5, "e")]


def meanwhile_paths(table: Table) -> set[str]:
    """The data files the upsert committed meanwhile added (the current snapshot's parent added them)."""
    parent = table.metadata.snapshot_by_id(table.current_snapshot().parent_snapshot_id)
    return {f.file.file_path for f in reader.live_files(table, parent).data
            if f.data_sequence_number == parent.sequence_number}


def test_a_full_compaction_leaves_no_equality_delete_and_pyiceberg_reads_the_table(catalog, duck):
    create(catalog)
    model: dict[int, str] = {}
    for changes in ({k: f"v{k}" for k in range(20)}, {3: None, 4: "x"}, {4: "y", 20: "new"}, {0: None, 4: None}):
        upsert(catalog, changes, model)
    with pytest.raises(ValueError, match="equality deletes"):
        catalog.load_table("ns.t").scan().to_arrow()
    result = compact(catalog, "ns.t", target_bytes=TARGET)
    assert result.files_removed == 3 and result.files_added == 1 and result.deletes_removed == 4
    table = catalog.load_table("ns.t")
    assert live_equality_deletes(table) == []
    assert table.current_snapshot().summary["total-delete-files"] == "0"
    plain = table.scan().to_arrow()
    assert sorted(zip(plain["id"].to_pylist(), plain["v"].to_pylist(), strict=True)) == state(model)
    assert rows(table) == duck_rows(duck, table) == state(model)


def test_deletes_that_apply_to_no_file_go_even_when_no_file_needs_rewriting(catalog, duck):
    create(catalog, BUCKETED)
    upsert(catalog, {1: "a", 2: "b"})  # rows and their deletes share a sequence number: the deletes apply to nothing
    result = compact(catalog, "ns.t", target_bytes=TARGET)
    table = catalog.load_table("ns.t")
    assert result.groups == 0 and result.files_removed == 0 and result.deletes_removed >= 1
    assert live_equality_deletes(table) == [] and rows(table) == duck_rows(duck, table) == [(1, "a"), (2, "b")]
    assert compact(catalog, "ns.t", target_bytes=TARGET).attempts == 0  # nothing left to do


def test_a_position_delete_committed_meanwhile_on_a_replaced_file_takes_its_group_out(catalog, duck):
    create(catalog)
    model: dict[int, str] = {}
    upsert(catalog, {1: "a", 2: "b", 3: "c"}, model)
    upsert(catalog, {2: "b2"}, model)

    class CatalogWithPositionDeleteMeanwhile:
        def __init__(self):
            self.done = False

        def load_table(self, identifier):
            table = catalog.load_table(identifier)
            if not self.done:
                self.done = True
                first = min(reader.live_files(table).data, key=lambda f: f.data_sequence_number).file
                commit_position_delete(catalog.load_table(identifier), first, [0])  # the row of key 1
            return table

    result = compact(CatalogWithPositionDeleteMeanwhile(), "ns.t", target_bytes=TARGET)
    # The group is out; what lands drops only the first commit's delete, which applies to no row.
    assert result.groups_abandoned == 1 and result.files_removed == 0 and result.deletes_removed == 1
    table = catalog.load_table("ns.t")
    assert len(reader.live_files(table).data) == 2 and len(reader.live_files(table).position_deletes) == 1
    del model[1]
    assert rows(table) == duck_rows(duck, table) == state(model)
    again = compact(catalog, "ns.t", target_bytes=TARGET)  # the next run reads the files with the delete
    assert not again.abandoned and again.files_removed == 2
    table = catalog.load_table("ns.t")
    assert rows(table) == duck_rows(duck, table) == state(model) == [(2, "b2"), (3, "c")]


def commit_position_delete(table: Table, data_file: DataFile, positions: list[int]) -> None:
    """A position delete file naming rows of `data_file`, committed in a delete manifest of its own snapshot."""
    delete = position_delete_file(table, data_file.file_path, positions, data_file.partition, data_file.spec_id)
    commit_upsert(table, [], [delete], {})


# -- manifests, expiry, the scheduler


def test_merging_an_upsert_tables_manifests_keeps_every_sequence_number_and_row(catalog, duck):
    create(catalog)
    model: dict[int, str] = {}
    rng = random.Random(7)
    for _ in range(6):
        upsert(catalog, {rng.randrange(12): rng.choice(["p", "q", None]) for _ in range(4)}, model)
    before = catalog.load_table("ns.t")
    listed = reader.live_files(before)
    assert len(before.current_snapshot().manifests(before.io)) == 12
    assert merge_manifests(catalog, "ns.t", min_manifests=10) == 12
    after = catalog.load_table("ns.t")
    assert after.current_snapshot().summary.operation.value == "replace"
    assert len(after.current_snapshot().manifests(after.io)) == 2  # one data manifest, one delete manifest
    merged = reader.live_files(after)

    def sequence_numbers(files):
        return sorted((f.file.file_path, f.data_sequence_number, f.file_sequence_number) for f in files)

    assert sequence_numbers(merged.data) == sequence_numbers(listed.data)
    assert sequence_numbers(merged.equality_deletes) == sequence_numbers(listed.equality_deletes)
    assert rows(after) == rows(before) == duck_rows(duck, after) == state(model)
    # The merged listing is still compacted right (sequence numbers are what compaction plans on).
    compact(catalog, "ns.t", target_bytes=TARGET)
    assert rows(catalog.load_table("ns.t")) == state(model)


def test_an_empty_snapshot_carrying_offsets_forward_keeps_the_delete_manifests(catalog):
    # expire._carry_forward commits such a snapshot with commit.committer.append_files.
    create(catalog)
    model: dict[int, str] = {}
    upsert(catalog, {1: "a", 2: "b"}, model)
    upsert(catalog, {1: None}, model)
    append_files(catalog.load_table("ns.t"), [], {"tabletopic.offsets.g": "{}"})
    table = catalog.load_table("ns.t")
    assert len(live_equality_deletes(table)) == 2 and rows(table) == state(model) == [(2, "b")]


def test_the_scheduler_lists_an_upsert_tables_files_and_compacts_on_its_equality_deletes(catalog):
    create(catalog)
    for key in range(3):
        upsert(catalog, {key: "x"})
    counted = small_files(catalog, "ns.t", TARGET)  # table.scan() would raise on the equality deletes
    assert (counted.count, counted.delete_files) == (3, 3)
    settings = MaintenanceConfig(min_small_files=10, max_delete_files=3, target_file_size_bytes=1 << 40)
    quiet = TableState(last_expire=100.0, last_orphans=100.0)
    assert due(110.0, quiet, SmallFiles(2, 10, delete_files=2), settings).compact is None
    assert due(110.0, quiet, SmallFiles(2, 10, delete_files=3), settings).compact == "3 equality-delete files"
    assert MaintenanceConfig().max_delete_files == 50


# -- a table bucketed by the key, and random histories with compactions racing upserts


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("spec", [UNPARTITIONED_PARTITION_SPEC, BUCKETED], ids=["unpartitioned", "bucket4"])
def test_random_upserts_with_compactions_and_merges_racing_them_equal_the_model(catalog, duck, seed, spec):
    rng = random.Random(seed)
    create(catalog, spec)
    model: dict[int, str] = {}
    for step in range(10):
        changes = {rng.randrange(30): rng.choice([None, f"s{step}", f"t{step}"]) for _ in range(rng.randint(1, 8))}
        action = rng.choice(["upsert", "race", "compact", "merge"])
        if action == "race":
            compact(CatalogWithUpsertMeanwhile(catalog, changes, model), "ns.t", target_bytes=TARGET)
        else:
            upsert(catalog, changes, model)
            if action == "compact":
                compact(catalog, "ns.t", target_bytes=TARGET)
            elif action == "merge":
                merge_manifests(catalog, "ns.t", min_manifests=2)
        table = catalog.load_table("ns.t")
        assert rows(table) == state(model), f"step {step}: {action}"
    assert duck_rows(duck, table) == state(model)
    compact(catalog, "ns.t", target_bytes=TARGET)
    table = catalog.load_table("ns.t")
    assert live_equality_deletes(table) == []
    plain = table.scan().to_arrow()
    assert sorted(zip(plain["id"].to_pylist(), plain["v"].to_pylist(), strict=True)) == state(model)
    assert duck_rows(duck, table) == state(model)
    if spec is BUCKETED:  # one file per bucket holding keys, each in its own bucket
        bucket = BucketTransform(4).transform(LongType())
        files = reader.live_files(table).data
        assert len({f.file.partition[0] for f in files}) == len(files) == len({bucket(k) for k in model})


# -- the plan (pure)


def test_a_partition_where_an_equality_delete_applies_is_rewritten_whole_the_others_as_before():
    big = 100
    files = [FileInfo("p1-old", "p1", big, 1), FileInfo("p1-lone-big", "p1", big * 10, 3),
             FileInfo("p2-a", "p2", 1, 1), FileInfo("p2-b", "p2", 1, 2), FileInfo("p3", "p3", 1, 5)]
    deletes = [DeleteInfo("d-p1", "p1", sequence_number=2, equality=True),
               DeleteInfo("d-p3", "p3", sequence_number=5, equality=True)]  # same seq as p3's file: applies to none
    groups = compaction_groups(files, deletes, target_bytes=big * 4, min_files=2)
    assert sorted(sorted(f.path for f in g) for g in groups) == [["p1-lone-big"], ["p1-old"], ["p2-a", "p2-b"]]
    everywhere = [DeleteInfo("global", None, sequence_number=2, equality=True)]
    assert sorted(f.path for g in compaction_groups(files, everywhere, big * 40, 2) for f in g) == \
        ["p1-lone-big", "p1-old", "p2-a", "p2-b"]  # p3's file is above the delete


def test_a_delete_dangles_once_no_file_of_its_scope_below_it_is_left():
    data = [FileInfo("a1", "a", 1, 1), FileInfo("a3", "a", 1, 3), FileInfo("b1", "b", 1, 1)]
    deletes = [DeleteInfo("da2", "a", sequence_number=2, equality=True),
               DeleteInfo("da3", "a", sequence_number=3, equality=True),
               DeleteInfo("g2", None, sequence_number=2, equality=True)]
    assert dangling_deletes(deletes, data, removed=()) == []
    assert dangling_deletes(deletes, data, removed={"a1"}) == ["da2", "da3"]  # a3 is at da3: not below it
    assert dangling_deletes(deletes, data, removed={"a1", "b1"}) == ["da2", "da3", "g2"]


def test_a_new_equality_delete_keeps_a_group_only_when_the_new_files_carry_the_starting_sequence_number():
    replaced = [FileInfo("f", "p", 1, 1)]
    equality = [DeleteInfo("eq", "p", sequence_number=9, equality=True)]
    position = [DeleteInfo("pos", "p", referenced_path="f", sequence_number=9)]
    assert deletes_touching(equality, replaced) == ["eq"]
    assert deletes_touching(equality, replaced, equality_ok=True) == []
    assert deletes_touching(position, replaced, equality_ok=True) == ["pos"]
