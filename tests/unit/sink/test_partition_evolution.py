"""A changed `partition_by` evolves the table's spec for new data (append and upsert), on a real SQLite
catalog; an upsert table's deletes still reach the rows written under the older spec."""

from __future__ import annotations

import json

import duckdb
import pytest
from pyiceberg.manifest import ManifestContent
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.transforms import BucketTransform, DayTransform, IdentityTransform

from tabletopic.catalog import reader
from tabletopic.catalog.partition_evolution import spec_change
from tabletopic.compaction.rewrite import compact
from tabletopic.config import TableConfig
from tabletopic.core.backoff import RetryPolicy
from tabletopic.core.records import RecordChunk
from tabletopic.exceptions import ConfigError
from tabletopic.sink import TableSink
from tests.iceberg_fixtures import duckdb_with_iceberg, sql_catalog


@pytest.fixture
def catalog(tmp_path):
    return sql_catalog(tmp_path)


@pytest.fixture(scope="module")
def duck():
    yield from duckdb_with_iceberg()


def chunk(keys, values, first=0):
    n = len(values)
    return RecordChunk("topic", 0, list(range(first, first + n)), keys, values,
                       [1767225600000 + i for i in range(n)], [None] * n)


def sink(catalog, **settings) -> TableSink:
    spec = TableConfig(**{"table": "ns.t", "topic": "topic", **settings})
    return TableSink(spec, catalog, "g", "w", RetryPolicy(deadline_s=2))


def data_spec_ids(table) -> set[int]:
    return {m.partition_spec_id for m in table.current_snapshot().manifests(table.io)
            if m.content == ManifestContent.DATA}


def test_spec_change_is_what_differs():
    day = PartitionField(4, 1000, DayTransform(), "ts_day")
    bucket = PartitionField(1, 1001, BucketTransform(4), "id_bucket_4")
    change = spec_change(PartitionSpec(day), PartitionSpec(PartitionField(1, 1000, BucketTransform(4), "id_bucket_4")))
    assert [f.name for f in change.removed] == ["ts_day"] and [f.name for f in change.added] == ["id_bucket_4"]
    assert spec_change(PartitionSpec(day, bucket), PartitionSpec(day, bucket)).empty
    wider = PartitionField(1, 1001, BucketTransform(8), "id_bucket_4")  # same name, other transform
    assert not spec_change(PartitionSpec(bucket), PartitionSpec(wider)).empty
    assert not spec_change(PartitionSpec(), PartitionSpec(PartitionField(2, 1000, IdentityTransform(), "r"))).empty


def test_an_append_table_follows_a_new_partition_by(catalog):
    first = sink(catalog)
    first.ingest(chunk([None] * 3, [json.dumps({"id": i, "region": "eu"}).encode() for i in range(3)]), now=0.0)
    first.flush()
    second = sink(catalog, partition_by=["region"])
    second.ingest(chunk([None] * 3, [json.dumps({"id": i, "region": "us"}).encode() for i in range(3, 6)],
                        first=3), now=1.0)
    second.flush()
    table = catalog.load_table("ns.t")
    assert [f.name for f in table.spec().fields] == ["region"]
    assert data_spec_ids(table) == {0, table.spec().spec_id}
    assert sorted(table.scan().to_arrow()["id"].to_pylist()) == list(range(6))
    # A third start with the same setting changes nothing more.
    sink(catalog, partition_by=["region"])
    assert len(catalog.load_table("ns.t").specs()) == 2


@pytest.mark.parametrize("older", [[], ["bucket(2, id)"]])
def test_an_upsert_tables_deletes_reach_the_rows_of_the_older_spec(catalog, duck, older):
    def values(pairs):
        return [None if v is None else json.dumps({"id": k, "v": v}).encode() for k, v in pairs]

    def keys(pairs):
        return [json.dumps({"id": k}).encode() for k, _ in pairs]

    before = [(k, f"a{k}") for k in range(10)]
    first = sink(catalog, mode="upsert", partition_by=older)
    first.ingest(chunk(keys(before), values(before)), now=0.0)
    first.flush()
    after = [(1, "b1"), (2, None), (3, "b3"), (11, "b11")]
    second = sink(catalog, mode="upsert", partition_by=["bucket(4, id)"])
    second.ingest(chunk(keys(after), values(after), first=10), now=1.0)
    second.flush()
    expected = dict(before)
    for k, v in after:
        if v is None:
            expected.pop(k)
        else:
            expected[k] = v
    table = catalog.load_table("ns.t")
    assert len(table.specs()) == 2
    rows = reader.read(table, columns=["id", "v"]).to_pylist()
    assert sorted((r["id"], r["v"]) for r in rows) == sorted(expected.items())
    def duck_rows(con=duck):
        metadata = catalog.load_table("ns.t").metadata_location.removeprefix("file://")
        return sorted(con.execute(f"SELECT id, v FROM iceberg_scan('{metadata}')").fetchall())

    if older:
        # DuckDB 1.5.5 fails on equality deletes scoped by two partitioned specs (an internal error that
        # invalidates its connection: docs/types.md); after compaction it reads the table.
        with pytest.raises(duckdb.Error):
            duck_rows(next(duckdb_with_iceberg()))
    else:
        assert duck_rows() == sorted(expected.items())
    result = compact(catalog, "ns.t", 512 * 1024 * 1024)
    assert result.deletes_removed > 0
    assert duck_rows() == sorted(expected.items())
    assert sorted((r["id"], r["v"]) for r in catalog.load_table("ns.t").scan().to_arrow().to_pylist()) == \
        sorted(expected.items())


def test_an_upsert_table_refuses_a_spec_its_deletes_cannot_be_scoped_by(catalog):
    writer = sink(catalog, mode="upsert")
    writer.ingest(chunk([b'{"id": 1}'], [b'{"id": 1, "region": "eu"}']), now=0.0)
    writer.flush()
    with pytest.raises(ConfigError, match="not computed from the key"):
        sink(catalog, mode="upsert", partition_by=["region"])
    assert len(catalog.load_table("ns.t").specs()) == 1


def test_a_spec_set_elsewhere_is_left_alone_by_a_config_without_partition_by(catalog):
    from pyiceberg.schema import Schema
    from pyiceberg.types import LongType, NestedField

    schema = Schema(NestedField(1, "id", LongType(), required=False))
    catalog.create_table("ns.t", schema=schema,
                         partition_spec=PartitionSpec(PartitionField(1, 1000, BucketTransform(4), "id_bucket")))
    sink(catalog)
    assert [f.name for f in catalog.load_table("ns.t").spec().fields] == ["id_bucket"]
    sink(catalog, partition_by=["bucket(8, id)"])  # said: followed, and recorded
    sink(catalog)  # now tabletopic set it: an empty setting removes it
    assert catalog.load_table("ns.t").spec().is_unpartitioned()
