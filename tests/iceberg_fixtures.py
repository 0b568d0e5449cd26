"""What the unit tests of upsert tables share: a SQLite catalog with namespace `ns`, and a DuckDB connection
with the Iceberg extension from its wheel (DuckDB applies equality deletes: a second reader to compare with)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
from pyiceberg.catalog.sql import SqlCatalog

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
