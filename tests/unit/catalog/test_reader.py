"""The delete-aware reader against real SQLite-catalog tables holding equality and position deletes:
its rows equal a pure dict model and DuckDB's iceberg_scan (which applies equality deletes itself)."""

from __future__ import annotations

import itertools
import uuid

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat, ManifestEntry, ManifestEntryStatus
from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC, PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.transforms import BucketTransform, IdentityTransform
from pyiceberg.typedef import Record
from pyiceberg.types import LongType, NestedField, StringType

from tabletopic.catalog.pyiceberg_private import ReplaceSnapshot, new_manifest_writer
from tabletopic.catalog.reader import Listing, LiveFile, data_file_sizes, deletes_for, live_files, read
from tabletopic.commit.committer import write_data_files
from tabletopic.commit.upsert_files import commit_upsert, write_equality_deletes
from tests.iceberg_fixtures import duckdb_with_iceberg, position_delete_file, sql_catalog

ID_KEY = Schema(NestedField(1, "id", LongType(), required=True), NestedField(2, "v", StringType(), required=False),
                identifier_field_ids=[1])
COMPOSITE_KEY = Schema(NestedField(1, "id", LongType(), required=True),
                       NestedField(2, "region", StringType(), required=True),
                       NestedField(3, "v", StringType(), required=False), identifier_field_ids=[1, 2])
BUCKETED = PartitionSpec(PartitionField(source_id=1, field_id=1000, transform=BucketTransform(4), name="b"))
_names = (f"ns.t{i}" for i in itertools.count())


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    return sql_catalog(tmp_path_factory.mktemp("reader"))


@pytest.fixture(scope="module")
def duck():
    yield from duckdb_with_iceberg()


def create(catalog, schema=ID_KEY, spec=UNPARTITIONED_PARTITION_SPEC) -> Table:
    return catalog.create_table(next(_names), schema=schema, partition_spec=spec, properties={"format-version": "2"})


def rows(table: Table, data: dict) -> pa.Table:
    return pa.table(data, schema=table.schema().as_arrow())


def upsert(table: Table, new_rows: dict, delete_keys: dict) -> Table:
    """One upsert snapshot: `new_rows` added, every older row of `delete_keys` deleted; the reloaded table."""
    data = write_data_files(table, rows(table, new_rows)) if new_rows and next(iter(new_rows.values())) else []
    deletes = write_equality_deletes(table, pa.table(delete_keys), table.schema().identifier_field_ids)
    commit_upsert(table, data, deletes, {})
    return reload(table)


def reload(table: Table) -> Table:
    return table.catalog.load_table(table.name())


def as_set(table: pa.Table) -> set[tuple]:
    return set(zip(*(c.to_pylist() for c in table.columns), strict=True)) if table.num_columns else set()


def duck_rows(duck, table: Table) -> set[tuple]:
    metadata = table.metadata_location.removeprefix("file://")
    return set(duck.execute(f"SELECT * FROM iceberg_scan('{metadata}')").fetchall())


# -- random histories

KEYS = st.integers(min_value=0, max_value=11)
CHANGE = st.tuples(KEYS, st.one_of(st.none(), st.sampled_from("abcdef")))  # None: a tombstone
HISTORY = st.lists(st.lists(CHANGE, min_size=1, max_size=8), min_size=1, max_size=5)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=HISTORY, bucketed=st.booleans(), seed=st.lists(KEYS, max_size=6, unique=True))
def test_random_upsert_histories_read_as_the_model_and_as_duckdb(catalog, duck, history, bucketed, seed):
    table = create(catalog, spec=BUCKETED if bucketed else UNPARTITIONED_PARTITION_SPEC)
    model = {k: f"s{k}" for k in seed}
    if seed:
        table.append(rows(table, {"id": seed, "v": [model[k] for k in seed]}))
        table = reload(table)
    for changes in history:
        last = dict(changes)  # the last change of each key in a commit wins, as the upsert plan dedupes
        for key, value in last.items():
            if value is None:
                model.pop(key, None)
            else:
                model[key] = value
        upserted = sorted(k for k, v in last.items() if v is not None)
        table = upsert(table, {"id": upserted, "v": [last[k] for k in upserted]}, {"id": sorted(last)})
    expected = set(model.items())
    assert as_set(read(table)) == expected
    assert duck_rows(duck, table) == expected
    assert as_set(read(table, columns=["v", "id"], row_filter="id >= 6")) == {(k, v) for k, v in expected if k >= 6}
    assert sorted(read(table, columns=["v"]).column("v").to_pylist()) == sorted(model.values())


# -- cases


def test_rows_written_with_a_delete_of_their_key_survive_it_and_older_rows_go(catalog, duck):
    table = create(catalog)
    table.append(rows(table, {"id": [1, 2, 3], "v": ["a", "b", "c"]}))
    table = upsert(reload(table), {"id": [2, 4], "v": ["b2", "d"]}, {"id": [2, 3, 4]})
    [delete] = live_files(table).equality_deletes
    new = [f for f in live_files(table).data if f.data_sequence_number == delete.data_sequence_number]
    assert len(new) == 1 and new[0].file.record_count == 2
    assert as_set(read(table)) == {(1, "a"), (2, "b2"), (4, "d")} == duck_rows(duck, table)


def test_a_composite_key_deletes_only_rows_matching_every_key_column(catalog, duck):
    table = create(catalog, COMPOSITE_KEY)
    table.append(rows(table, {"id": [1, 1, 2, 2], "region": ["eu", "us", "eu", "us"], "v": ["a", "b", "c", "d"]}))
    table = upsert(reload(table), {"id": [1], "region": ["us"], "v": ["b2"]},
                   {"id": [1, 2], "region": ["us", "eu"]})
    expected = {(1, "eu", "a"), (1, "us", "b2"), (2, "us", "d")}
    assert as_set(read(table)) == expected == duck_rows(duck, table)
    # The key columns are read for the anti-join even when not asked for.
    assert sorted(read(table, columns=["v"]).column("v").to_pylist()) == ["a", "b2", "d"]


def test_a_bucketed_table_applies_each_delete_only_to_its_own_bucket(catalog, duck):
    table = create(catalog, spec=BUCKETED)
    ids = list(range(1, 13))
    table.append(rows(table, {"id": ids, "v": [str(i) for i in ids]}))
    table = upsert(reload(table), {"id": [3], "v": ["three"]}, {"id": [3, 4, 5]})
    listing = live_files(table)
    specs = table.specs()
    for data in listing.data:
        _, equality = deletes_for(listing, data, specs)
        assert all(d.file.partition == data.file.partition for d in equality)
    expected = {(3, "three"), *((i, str(i)) for i in ids if i not in (3, 4, 5))}
    assert as_set(read(table)) == expected == duck_rows(duck, table)


def test_a_position_delete_removes_its_rows_from_its_file_only(catalog, duck):
    table = create(catalog)
    table.append(rows(table, {"id": [1, 2, 3], "v": ["a", "b", "c"]}))
    table = reload(table)
    table.append(rows(table, {"id": [4, 5], "v": ["d", "e"]}))
    table = reload(table)
    first = min(live_files(table).data, key=lambda f: f.data_sequence_number)
    table = upsert(table, {"id": [9], "v": ["z"]}, {"id": [9]})  # an equality delete as well
    commit_upsert(table, [], [position_delete_file(table, first.file.file_path, [0, 2])], {})
    table = reload(table)
    assert len(live_files(table).position_deletes) == 1
    expected = {(2, "b"), (4, "d"), (5, "e"), (9, "z")}
    assert as_set(read(table)) == expected == duck_rows(duck, table)


@pytest.mark.parametrize("explicit", [True, False])
def test_a_rewrite_keeping_the_data_sequence_number_of_its_start_is_still_deleted(catalog, duck, explicit):
    """A compaction planned on S0 commits after an upsert: its ADDED entry keeps S0's data sequence number,
    so the upsert's later delete still applies to it. Inheriting the commit's number resurrects the row."""
    table = create(catalog)
    table.append(rows(table, {"id": [1, 2, 3], "v": ["a", "b", "c"]}))
    start = reload(table)
    s0 = start.current_snapshot()
    [original] = live_files(start).data
    table = upsert(start, {"id": [2], "v": ["b2"]}, {"id": [2]})
    rewritten = write_data_files(table, rows(table, {"id": [1, 2, 3], "v": ["a", "b", "c"]}))
    snapshot_id = table.metadata.new_snapshot_id()
    written: list[str] = []
    with new_manifest_writer(table, 0, snapshot_id, written) as writer:
        for data_file in rewritten:
            writer.add_entry(ManifestEntry.from_args(
                status=ManifestEntryStatus.ADDED, snapshot_id=snapshot_id,
                sequence_number=s0.sequence_number if explicit else None, file_sequence_number=None,
                data_file=data_file))
    kept = [m for m in table.current_snapshot().manifests(table.io)
            if m.manifest_path not in {n.manifest_path for n in s0.manifests(table.io)}]
    replace = ReplaceSnapshot(table, snapshot_id, [writer.to_manifest_file(), *kept], [original.file], rewritten, {})
    replace.stage()
    replace.commit()
    table = reload(table)
    [data] = [f for f in live_files(table).data if f.file.file_path == rewritten[0].file_path]
    assert data.data_sequence_number == (s0.sequence_number if explicit else table.current_snapshot().sequence_number)
    expected = {(1, "a"), (2, "b2"), (3, "c")} if explicit else {(1, "a"), (2, "b"), (2, "b2"), (3, "c")}
    assert as_set(read(table)) == expected == duck_rows(duck, table)


def test_reading_an_older_snapshot_applies_only_the_deletes_it_held(catalog):
    table = create(catalog)
    table.append(rows(table, {"id": [1, 2, 3], "v": ["a", "b", "c"]}))
    table = upsert(reload(table), {"id": [1], "v": ["a2"]}, {"id": [1, 3]})
    older = table.current_snapshot()
    table = upsert(table, {"id": [2], "v": ["b2"]}, {"id": [1, 2]})
    assert as_set(read(table)) == {(2, "b2")}
    assert as_set(read(table, snapshot=older)) == {(1, "a2"), (2, "b")}
    listing = live_files(table, older)
    assert listing.snapshot_id == older.snapshot_id and len(listing.data) == 2
    first = min(listing.data, key=lambda f: f.data_sequence_number)
    assert as_set(read(table, files=[first], snapshot=older)) == {(2, "b")}
    assert as_set(read(table, files=[first])) == set()  # the current snapshot's deletes take key 2 too


def test_data_file_sizes_are_those_of_the_live_data_files_only(catalog):
    table = create(catalog)
    first = write_data_files(table, rows(table, {"id": [1, 2], "v": ["a", "b"]}))
    commit_upsert(table, first, [], {})
    table = reload(table)
    second = write_data_files(table, rows(table, {"id": [2], "v": ["b2"]}))
    deletes = write_equality_deletes(table, pa.table({"id": [2]}), [1])
    commit_upsert(table, second, deletes, {})
    table = reload(table)
    assert sorted(data_file_sizes(table)) == sorted(f.file_size_in_bytes for f in [*first, *second])
    assert data_file_sizes(create(catalog)) == []


def test_on_an_append_table_read_is_pyiceberg_s_scan(catalog):
    spec = PartitionSpec(PartitionField(source_id=2, field_id=1000, transform=IdentityTransform(), name="v"))
    table = create(catalog, spec=spec)
    assert read(table).equals(table.scan().to_arrow())
    for batch in ({"id": [1, 2, 3], "v": ["a", "b", "a"]}, {"id": [4, 5], "v": ["c", None]}):
        table.append(rows(table, batch))
    table = reload(table)
    assert read(table).equals(table.scan().to_arrow())
    assert read(table, columns=["id"], row_filter="v == 'a'").equals(
        table.scan(row_filter="v == 'a'", selected_fields=("id",)).to_arrow())
    assert sorted(f.file.file_size_in_bytes for f in live_files(table).data) == sorted(data_file_sizes(table))
    assert sorted(data_file_sizes(table)) == sorted(t.file.file_size_in_bytes for t in table.scan().plan_files())
    # The slow path (explicit files) reads the same rows.
    assert as_set(read(table, files=live_files(table).data)) == as_set(table.scan().to_arrow())


# -- the scope rule, on values


def live(content: DataFileContent, seq: int, spec_id: int = 0, partition: Record | None = None) -> LiveFile:
    data_file = DataFile.from_args(content=content, file_path=f"f-{uuid.uuid4()}", file_format=FileFormat.PARQUET,
                                   partition=partition if partition is not None else Record(0), record_count=1,
                                   file_size_in_bytes=1)
    return LiveFile(data_file, spec_id, seq, None)


def test_deletes_for_compares_data_sequence_numbers_and_scope():
    specs = {0: BUCKETED, 1: UNPARTITIONED_PARTITION_SPEC}
    data = live(DataFileContent.DATA, 5, partition=Record(0))
    position = {seq: live(DataFileContent.POSITION_DELETES, seq, partition=Record(0)) for seq in (4, 5, 6)}
    equality = {seq: live(DataFileContent.EQUALITY_DELETES, seq, partition=Record(0)) for seq in (4, 5, 6)}
    elsewhere = [live(DataFileContent.EQUALITY_DELETES, 9, partition=Record(1)),
                 live(DataFileContent.POSITION_DELETES, 9, partition=Record(1)),
                 live(DataFileContent.EQUALITY_DELETES, 9, spec_id=2, partition=Record(0))]
    global_delete = live(DataFileContent.EQUALITY_DELETES, 6, spec_id=1, partition=Record())
    listing = Listing(1, [data], [*position.values(), elsewhere[1]],
                      [*equality.values(), elsewhere[0], elsewhere[2], global_delete])
    specs[2] = BUCKETED
    got_position, got_equality = deletes_for(listing, data, specs)
    assert got_position == [position[5], position[6]]  # at or above the data's number
    assert got_equality == [equality[6], global_delete]  # strictly above; the global one reaches every partition
