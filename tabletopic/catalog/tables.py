"""Create and open the tables tabletopic writes."""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa
import structlog
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchTableError, TableAlreadyExistsError
from pyiceberg.schema import assign_fresh_schema_ids
from pyiceberg.table import Table

from tabletopic.catalog.calls import catalog_call
from tabletopic.catalog.partitioning import build_spec
from tabletopic.catalog.pyiceberg_private import iceberg_schema_from_arrow
from tabletopic.core import metadata
from tabletopic.core.partition_terms import parse_term

log = structlog.get_logger(__name__)

TABLE_PROPERTIES = {
    "format-version": "2",
    "write.parquet.compression-codec": "zstd",
    # A commit every 30 s would otherwise leave thousands of metadata.json files behind.
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "50",
}


def load_if_exists(catalog: Catalog, identifier: str) -> Table | None:
    try:
        return catalog.load_table(identifier)
    except NoSuchTableError:
        return None


def table_schema(value_schema: pa.Schema, with_metadata: bool) -> pa.Schema:
    """Value columns, then the Kafka metadata columns (unless switched off)."""
    fields = [f for f in value_schema if not (with_metadata and f.name in metadata.NAMES)]
    if with_metadata:
        fields += metadata.FIELDS
    return pa.schema(fields)


def create_table(
    catalog: Catalog,
    identifier: str,
    arrow_schema: pa.Schema,
    partition_by: list[str],
    extra_properties: Mapping[str, str],
) -> Table:
    """Create the table (format v2, zstd), or load it if another writer won the race."""
    namespace = identifier.rsplit(".", 1)[0]
    schema = assign_fresh_schema_ids(iceberg_schema_from_arrow(arrow_schema))
    spec = build_spec(schema, [parse_term(term) for term in partition_by])
    properties = {**TABLE_PROPERTIES, **extra_properties}
    # The schema and the spec are built before any call (what a record's schema can make fail); what
    # the calls raise is the catalog's doing (calls.py).
    with catalog_call("create_namespace", namespace):
        try:
            catalog.create_namespace(namespace)
        except Exception:
            # Two workers creating it at once: some catalogs answer the loser with a server error,
            # not "already exists" (the REST fixture's SQLite does).
            if not catalog.namespace_exists(namespace):
                raise
    with catalog_call("create_table", identifier):
        try:
            table = catalog.create_table(identifier, schema=schema, partition_spec=spec, properties=properties)
        except TableAlreadyExistsError:
            return catalog.load_table(identifier)
        except Exception:
            if not catalog.table_exists(identifier):
                raise
            return catalog.load_table(identifier)
    log.info("table.created", table=identifier, columns=len(schema.fields), partition_by=partition_by)
    return table
