"""Equality-delete files and the upsert snapshot, against a real SQLite catalog, read back by DuckDB
(pyiceberg 0.12 refuses to scan a table with equality deletes)."""

from pathlib import Path

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyiceberg.conversions import from_bytes
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.manifest import DataFileContent, ManifestContent
from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC, PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.transforms import BucketTransform, IdentityTransform
from pyiceberg.types import LongType, NestedField, StringType

from tabletopic.commit.committer import write_data_files
from tabletopic.commit.upsert_files import commit_upsert, write_equality_deletes
from tests.iceberg_fixtures import duckdb_with_iceberg, sql_catalog

ID_KEY = Schema(NestedField(1, "id", LongType(), required=True), NestedField(2, "v", StringType(), required=False),
                identifier_field_ids=[1])
COMPOSITE_KEY = Schema(NestedField(1, "id", LongType(), required=True),
                       NestedField(2, "region", StringType(), required=True),
                       NestedField(3, "v", StringType(), required=False), identifier_field_ids=[1, 2])
BUCKETS = 4


@pytest.fixture
def catalog(tmp_path):
    return sql_catalog(tmp_path)


@pytest.fixture(scope="module")
def duck():
    yield from duckdb_with_iceberg()


def create(catalog, schema=ID_KEY, spec=UNPARTITIONED_PARTITION_SPEC, name="ns.t") -> Table:
    return catalog.create_table(name, schema=schema, partition_spec=spec, properties={"format-version": "2"})


def rows(table: Table, data: dict) -> pa.Table:
    return pa.table(data, schema=table.schema().as_arrow())


def upsert(table: Table, new_rows: dict, delete_keys: dict, properties=None) -> int:
    data = write_data_files(table, rows(table, new_rows)) if new_rows else []
    deletes = write_equality_deletes(table, pa.table(delete_keys), table.schema().identifier_field_ids)
    return commit_upsert(table, data, deletes, properties or {})


def read(duck, table: Table) -> set[tuple]:
    """Every row as DuckDB reads the table's current metadata (it applies equality deletes)."""
    metadata = table.metadata_location.removeprefix("file://")
    return set(duck.execute(f"SELECT * FROM iceberg_scan('{metadata}')").fetchall())


def delete_entries(table: Table):
    snapshot = table.current_snapshot()
    return [(manifest, entry) for manifest in snapshot.manifests(table.io)
            if manifest.content == ManifestContent.DELETES and manifest.added_snapshot_id == snapshot.snapshot_id
            for entry in manifest.fetch_manifest_entry(table.io)]


def test_an_upsert_replaces_the_rows_of_its_keys_and_deletes_the_others(catalog, duck):
    table = create(catalog)
    table.append(rows(table, {"id": [1, 2, 3, 4, 5], "v": ["a", "b", "c", "d", "e"]}))
    upsert(catalog.load_table("ns.t"), {"id": [2, 6], "v": ["b2", "f"]}, {"id": [2, 3, 6]},
           {"tabletopic.offsets.g": '{"topic":{"0":7}}'})
    table = catalog.load_table("ns.t")
    assert read(duck, table) == {(1, "a"), (2, "b2"), (4, "d"), (5, "e"), (6, "f")}
    summary = table.current_snapshot().summary
    assert summary.operation.value == "overwrite"
    assert summary["tabletopic.offsets.g"] == '{"topic":{"0":7}}'
    assert summary["added-data-files"] == "1" and summary["added-equality-delete-files"] == "1"
    assert summary["added-equality-deletes"] == "3" and summary["total-data-files"] == "2"

    # A later commit's deletes apply to the rows of the one before: the later commit wins.
    upsert(table, {"id": [2], "v": ["b3"]}, {"id": [2, 5]})
    assert read(duck, catalog.load_table("ns.t")) == {(1, "a"), (2, "b3"), (4, "d"), (6, "f")}


def test_the_delete_file_sits_in_a_delete_manifest_with_its_key_ids_bounds_and_counts(catalog):
    table = create(catalog)
    table.append(rows(table, {"id": [1, 2, 3], "v": ["a", "b", "c"]}))
    parent = catalog.load_table("ns.t").current_snapshot()
    upsert(catalog.load_table("ns.t"), {"id": [9], "v": ["z"]}, {"id": [9, 3, 2]})
    table = catalog.load_table("ns.t")
    snapshot = table.current_snapshot()
    [(manifest, entry)] = delete_entries(table)
    assert manifest.content == ManifestContent.DELETES and manifest.added_files_count == 1
    with open(manifest.manifest_path.removeprefix("file://"), "rb") as avro:
        header = fastavro.reader(avro)
        assert header.metadata["content"] == "deletes"  # the manifest's own header says so too
        # The spec's list<int>: Spark and Trino fail to load list<long> (pyiceberg 0.12 writes that).
        assert _equality_ids_item_type(header.writer_schema) == "int"
    delete = entry.data_file
    assert delete.content == DataFileContent.EQUALITY_DELETES and delete.equality_ids == [1]
    assert delete.spec_id == 0 and delete.record_count == 3
    assert from_bytes(LongType(), delete.lower_bounds[1]) == 2 and from_bytes(LongType(), delete.upper_bounds[1]) == 9
    assert delete.null_value_counts == {1: 0} and delete.value_counts == {1: 3}
    # New rows and deletes share the snapshot's sequence number: the rows survive their own deletes.
    assert entry.sequence_number == snapshot.sequence_number
    data = [e for m in snapshot.manifests(table.io) if m.content == ManifestContent.DATA
            and m.added_snapshot_id == snapshot.snapshot_id for e in m.fetch_manifest_entry(table.io)]
    assert [e.sequence_number for e in data] == [snapshot.sequence_number]
    kept = {m.manifest_path for m in parent.manifests(table.io)}
    assert kept <= {m.manifest_path for m in snapshot.manifests(table.io)}
    assert pq.read_schema(delete.file_path.removeprefix("file://")).field("id").metadata == {b"PARQUET:field_id": b"1"}


def test_tombstones_only_make_a_delete_snapshot(catalog, duck):
    table = create(catalog)
    table.append(rows(table, {"id": [1, 2], "v": ["a", "b"]}))
    upsert(catalog.load_table("ns.t"), {}, {"id": [1]})
    table = catalog.load_table("ns.t")
    assert table.current_snapshot().summary.operation.value == "delete"
    assert read(duck, table) == {(2, "b")}


def test_a_composite_key_deletes_only_rows_matching_every_key_column(catalog, duck):
    table = create(catalog, COMPOSITE_KEY)
    table.append(rows(table, {"id": [1, 1, 2], "region": ["eu", "us", "eu"], "v": ["a", "b", "c"]}))
    upsert(catalog.load_table("ns.t"), {"id": [1], "region": ["eu"], "v": ["a2"]},
           {"id": [1, 2], "region": ["eu", "eu"]})
    table = catalog.load_table("ns.t")
    assert read(duck, table) == {(1, "eu", "a2"), (1, "us", "b")}
    [(_, entry)] = delete_entries(table)
    assert entry.data_file.equality_ids == [1, 2]


def test_a_table_bucketed_by_the_key_gets_one_delete_file_per_bucket_touched(catalog, duck):
    spec = PartitionSpec(PartitionField(source_id=1, field_id=1000, transform=BucketTransform(BUCKETS), name="b"))
    table = create(catalog, spec=spec)
    ids = list(range(1, 11))
    table.append(rows(table, {"id": ids, "v": [str(i) for i in ids]}))
    touched = [1, 2, 3, 4, 5]
    upsert(catalog.load_table("ns.t"), {"id": [1, 11], "v": ["one", "eleven"]}, {"id": [*touched, 11]})
    table = catalog.load_table("ns.t")
    bucket = BucketTransform(BUCKETS).transform(LongType())
    files = [entry.data_file for _, entry in delete_entries(table)]
    assert sorted(f.partition[0] for f in files) == sorted({bucket(k) for k in [*touched, 11]})
    for delete in files:
        # DuckDB applies a delete to every partition of its spec: only the values say it is scoped right.
        keys = pq.read_table(delete.file_path.removeprefix("file://")).column("id").to_pylist()
        assert {bucket(k) for k in keys} == {delete.partition[0]} and delete.spec_id == table.spec().spec_id
    assert read(duck, table) == {(1, "one"), (11, "eleven"), *((i, str(i)) for i in range(6, 11))}


def test_a_table_partitioned_by_a_value_column_is_refused(catalog):
    spec = PartitionSpec(PartitionField(source_id=2, field_id=1000, transform=IdentityTransform(), name="v"))
    table = create(catalog, spec=spec)
    with pytest.raises(ValueError, match=r"partitioned by \['v'\]"):
        write_equality_deletes(table, pa.table({"id": [1]}), [1])


def test_null_keys_are_refused(catalog):
    with pytest.raises(ValueError, match="holds nulls"):
        write_equality_deletes(create(catalog), pa.table({"id": pa.array([1, None], pa.int64())}), [1])


def test_an_upsert_on_a_table_that_moved_fails_and_leaves_no_manifest_behind(catalog, duck, tmp_path):
    table = create(catalog)
    table.append(rows(table, {"id": [1, 2], "v": ["a", "b"]}))
    stale = catalog.load_table("ns.t")
    catalog.load_table("ns.t").append(rows(table, {"id": [3], "v": ["c"]}))  # another writer's commit lands
    data = write_data_files(stale, rows(stale, {"id": [1], "v": ["a2"]}))
    deletes = write_equality_deletes(stale, pa.table({"id": [1, 3]}), [1])
    metadata_files = set(Path(tmp_path).rglob("*.avro"))
    with pytest.raises(CommitFailedException):
        commit_upsert(stale, data, deletes, {})
    assert set(Path(tmp_path).rglob("*.avro")) == metadata_files
    # The retry on the new base reuses the same files.
    commit_upsert(catalog.load_table("ns.t"), data, deletes, {})
    assert read(duck, catalog.load_table("ns.t")) == {(1, "a2"), (2, "b")}


def _equality_ids_item_type(schema) -> str:
    data_file = next(f for f in schema["fields"] if f["name"] == "data_file")["type"]
    equality_ids = next(f for f in data_file["fields"] if f["name"] == "equality_ids")["type"]
    array = next(t for t in equality_ids if isinstance(t, dict))
    item = array["items"]
    return item if isinstance(item, str) else item["type"]
