"""Create and open the tables tabletopic writes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pyarrow as pa
import structlog
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchTableError, TableAlreadyExistsError
from pyiceberg.partitioning import PartitionSpec
from pyiceberg.schema import Schema, assign_fresh_schema_ids
from pyiceberg.table import Table

from tabletopic.catalog.calls import catalog_call
from tabletopic.catalog.partitioning import build_spec
from tabletopic.catalog.pyiceberg_private import iceberg_schema_from_arrow
from tabletopic.core import metadata
from tabletopic.core.partition_terms import parse_term
from tabletopic.exceptions import ConfigError

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


def table_schema(value_schema: pa.Schema, with_metadata: bool, key_schema: pa.Schema | None = None) -> pa.Schema:
    """Value columns, then the Kafka metadata columns (unless switched off). With `key_schema` (an upsert
    table), its columns come first and are required; a value column of the same name is the key's."""
    keys = [f.with_nullable(False) for f in key_schema] if key_schema is not None else []
    key_names = {f.name for f in keys}
    fields = keys + [f for f in value_schema
                     if f.name not in key_names and not (with_metadata and f.name in metadata.NAMES)]
    if with_metadata:
        fields += metadata.FIELDS
    return pa.schema(fields)


def key_columns(table: Table) -> list[str]:
    """An upsert table's key columns (its identifier fields), in the schema's order; none for an append table."""
    schema = table.schema()
    return [f.name for f in schema.fields if f.field_id in set(schema.identifier_field_ids)]


def scope_problem(schema: Schema, spec: PartitionSpec) -> str | None:
    """Why equality deletes on `schema`'s identifier fields cannot be scoped by `spec`'s partitions, if
    they cannot: a partition field whose source is not a key column (../shared/DESIGN.md, "Upsert")."""
    keys = set(schema.identifier_field_ids)
    outside = [f.name for f in spec.fields if f.source_id not in keys]
    if not outside:
        return None
    names = [schema.find_column_name(i) or str(i) for i in sorted(keys)]
    return (f"partition field(s) {', '.join(outside)} are not computed from the key ({', '.join(names)}): an "
            f"equality delete in one partition would miss the key's rows in the others")


def create_table(
    catalog: Catalog,
    identifier: str,
    arrow_schema: pa.Schema,
    partition_by: list[str],
    extra_properties: Mapping[str, str],
    identifier_fields: Sequence[str] = (),
    location: str | None = None,
) -> Table:
    """Create the table (format v2, zstd), or load it if another writer won the race. `identifier_fields`
    (an upsert table's key columns, required in `arrow_schema`) become its Iceberg identifier fields.
    `location`: where its files go (default: where the catalog puts a table of that name)."""
    namespace = identifier.rsplit(".", 1)[0]
    schema = assign_fresh_schema_ids(iceberg_schema_from_arrow(arrow_schema))
    if identifier_fields:
        ids = [schema.find_field(name).field_id for name in identifier_fields]
        schema = Schema(*schema.fields, schema_id=schema.schema_id, identifier_field_ids=ids)
    spec = build_spec(schema, [parse_term(term) for term in partition_by])
    if identifier_fields and (problem := scope_problem(schema, spec)) is not None:
        raise ConfigError("partition_by", f"{problem}. Partition by a key column, e.g. "
                                          f"bucket(16, {identifier_fields[0]}), or not at all")
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
            table = catalog.create_table(identifier, schema=schema, partition_spec=spec, properties=properties,
                                         location=location)
        except TableAlreadyExistsError:
            return catalog.load_table(identifier)
        except Exception:
            if not catalog.table_exists(identifier):
                raise
            return catalog.load_table(identifier)
    log.info("table.created", table=identifier, columns=len(schema.fields), partition_by=partition_by)
    return table
