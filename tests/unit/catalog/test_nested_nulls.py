"""A null list or map stays null through pyiceberg's projection, written and read back: never `[]` or `{}`
(pyiceberg 0.12 drops the validity of struct-valued lists and maps; catalog/pyiceberg_private.py)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyiceberg.catalog.sql import SqlCatalog

from tabletopic.catalog.pyiceberg_private import data_files_from_arrow
from tabletopic.catalog.reader import read

ITEM = pa.struct([("sku", pa.string()), ("n", pa.int64())])
COLUMNS = {
    "lines": (pa.list_(ITEM), [None, [{"sku": "a", "n": 1}], [], None]),
    "by_sku": (pa.map_(pa.string(), ITEM), [None, [("a", {"sku": "a", "n": 1})], [], None]),
    "nested": (pa.struct([("lines", pa.list_(ITEM))]), [{"lines": None}, {"lines": [{"sku": "b", "n": 2}]}, None,
                                                         {"lines": []}]),
    "grid": (pa.list_(pa.list_(ITEM)), [[None, [{"sku": "c", "n": 3}]], None, [[]], [None]]),
    "tags": (pa.list_(pa.string()), [None, ["x"], [], None]),
}


@pytest.fixture
def table(tmp_path: Path):
    catalog = SqlCatalog("t", uri=f"sqlite:///{tmp_path}/c.db", warehouse=f"file://{tmp_path}")
    catalog.create_namespace("ns")
    schema = pa.schema([("id", pa.int64()), *[(name, kind) for name, (kind, _) in COLUMNS.items()]])
    rows = pa.table({"id": list(range(4)), **{name: pa.array(values, kind) for name, (kind, values) in
                                              COLUMNS.items()}}, schema=schema)
    return catalog.create_table("ns.t", schema=schema), rows


@pytest.mark.parametrize("first", [0, 1])  # a slice: its offsets do not start at 0
def test_null_nested_lists_and_maps_are_written_null(table, first):
    iceberg, rows = table
    rows = rows.slice(first)
    files = data_files_from_arrow(iceberg, rows)
    written = pa.concat_tables([pq.read_table(f.file_path.removeprefix("file://")) for f in files])
    assert written.select(rows.column_names).to_pylist() == rows.to_pylist()
    iceberg.append(rows)  # pyiceberg reads the written field ids back: a file missing one would be refused
    assert iceberg.refresh().scan().to_arrow().to_pylist() == rows.to_pylist()


def test_null_nested_lists_and_maps_read_back_null(table):
    iceberg, rows = table
    iceberg.append(rows)
    iceberg = iceberg.refresh()
    assert iceberg.scan().to_arrow().sort_by("id").to_pylist() == rows.to_pylist()
    assert read(iceberg).sort_by("id").select(rows.column_names).to_pylist() == rows.to_pylist()
