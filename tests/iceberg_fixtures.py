"""What the unit tests of upsert tables share: a SQLite catalog with namespace `ns`, a DuckDB connection
with the Iceberg extension from its wheel (DuckDB applies equality deletes: a second reader to compare with),
and position delete files as Spark writes them (tabletopic writes none)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
from pyiceberg.table import Table
from pyiceberg.typedef import Record

from tabletopic.local.duckdb_extensions import extension_path


def sql_catalog(path: Path) -> SqlCatalog:
    catalog = SqlCatalog("test", uri=f"sqlite:///{path}/catalog.db", warehouse=f"file://{path}")
    catalog.create_namespace("ns")
    return catalog


def duckdb_with_iceberg() -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect()
    con.execute("SET autoinstall_known_extensions=false; SET autoload_known_extensions=false")
    for extension in ("avro", "iceberg"):
        con.execute(f"LOAD '{extension_path(extension, duckdb.__version__)}'")
    yield con
    con.close()


POSITION_DELETE_FIELD_IDS = (2147483546, 2147483545)  # the spec's reserved ids of `file_path` and `pos`


def position_delete_file(table: Table, data_path: str, positions: Sequence[int], partition: Record | None = None,
                         spec_id: int = 0) -> DataFile:
    """A file-scoped position delete file (written, not committed) naming rows `positions` of `data_path`."""
    path_id, pos_id = POSITION_DELETE_FIELD_IDS
    schema = pa.schema([pa.field("file_path", pa.string(), nullable=False, metadata={"PARQUET:field_id": str(path_id)}),
                        pa.field("pos", pa.int64(), nullable=False, metadata={"PARQUET:field_id": str(pos_id)})])
    location = f"{table.location()}/data/pos-delete-{uuid.uuid4()}.parquet"
    with table.io.new_output(location).create() as out:
        pq.write_table(pa.table({"file_path": [data_path] * len(positions), "pos": list(positions)}, schema=schema),
                       out)
    named = data_path.encode()
    delete = DataFile.from_args(
        content=DataFileContent.POSITION_DELETES, file_path=location, file_format=FileFormat.PARQUET,
        partition=partition if partition is not None else Record(), record_count=len(positions),
        file_size_in_bytes=len(table.io.new_input(location)),
        lower_bounds={path_id: named}, upper_bounds={path_id: named})
    delete.spec_id = spec_id  # `from_args` drops a spec_id
    return delete
