"""pyiceberg's private API, in one place: no other module of tabletopic imports or touches it.

Pinned to pyiceberg 0.12.0 (`PYICEBERG_VERSION`; pyproject.toml pins it exactly). The guard,
tests/unit/test_pyiceberg_seam.py, fails when another module reaches past pyiceberg's public API,
and when the installed pyiceberg is not this version: an upgrade re-checks this file first.

What tabletopic needs and pyiceberg 0.12 has no public call for:
- data files written outside a transaction, so that a commit retried on a new base reuses them
  (`pyiceberg.io.pyarrow._check_pyarrow_schema_compatible`, `_dataframe_to_data_files`);
- an Iceberg schema converted from an Arrow one before its ids are assigned, to build the
  partition spec against it (`Catalog._convert_schema_if_needed`);
- `replace` snapshots (compaction, manifest merging), which pyiceberg can neither produce nor sum
  up (`_OverwriteFiles`, `_SnapshotProducer`, their hooks and attributes);
- snapshots of manifests written beforehand under a given operation: `replace` for compaction,
  `overwrite`/`delete` for upserts (new rows and equality deletes in one snapshot);
- delete manifests: pyiceberg writes data manifests only (`ManifestWriterV2._meta`), and declares their
  `equality_ids` list<long> where the spec (and Java's readers) say list<int> (`ManifestWriter._with_partition`);
- the spec id a data file carries only when one was set (`DataFile._spec_id`: the public property
  raises when unset, as it is on the files `_dataframe_to_data_files` writes);
- null lists of structs and null maps with struct values kept null when pyiceberg projects Arrow data to a
  table's schema, on write and on read (`ArrowProjectionVisitor.list`/`.map` rebuild such arrays from offsets
  and values without their validity: a null list became `[]`, a null map `{}`; `_NullKeepingProjection`).

On an upgrade, re-check:
- `_dataframe_to_data_files(table_metadata=, df=, io=)`: target-sized Parquet files with field ids,
  under the table's default spec; `_check_pyarrow_schema_compatible(schema, arrow, format_version=)`
  raises ValueError on a mismatch;
- `Catalog._convert_schema_if_needed(arrow_schema)`: still a static method, returning a `Schema`;
- `ManifestWriterV2`: that `content()` alone sets the content recorded in the manifest list
  (`to_manifest_file`) and the `_meta` property the `content` key of the Avro header, and that it
  still writes `equality_ids` (field 135 of `DATA_FILE_TYPE[2]`); that `_with_partition(format_version)`
  still builds both the file and the record schema (and whether #3842 made field 136 an int: then drop
  `_with_int_equality_ids`); whether `write_manifest` now takes a content (then use it and drop
  `_DeleteManifestWriter`);
- `_SnapshotProducer`: the constructor; that `_commit` calls the hooks `_manifests`,
  `_deleted_entries`, `_existing_manifests` and `_summary(snapshot_properties)`; that
  `_SnapshotProducer._summary` totals the summary by `_operation` (it totals overwrites, not
  replaces); the attributes `_operation`, `_snapshot_id`, `_added_data_files`,
  `_deleted_data_files`, `_written_manifest_lists`;
- that `_SnapshotProducer._summary` counts equality-delete files among `_added_data_files` into
  `added-equality-delete-files`, `added-equality-deletes` and `added-delete-files` (an upsert's
  summary relies on it);
- that `UpdateTableMetadata.commit(producer)` stages the snapshot without registering the producer
  with the transaction (a registered producer is validated, rebuilt and cleaned up by pyiceberg's
  commit loop; a `PreparedSnapshot`'s caller does all three itself), and that the transaction then
  commits once (the callers switch pyiceberg's retries off: commit.committer.without_pyiceberg_retries);
- `_OverwriteFiles` still rewrites the manifests holding the files it deletes;
- whether `ArrowProjectionVisitor.list`/`.map` keep the validity of struct-valued lists and maps (then drop
  `_NullKeepingProjection`), and that `_to_requested_schema` still looks the visitor up by its module name;
- whether a public API now does any of this (a `replace` operation, a public writer): use it, and
  shrink this module.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.io import pyarrow as pyiceberg_arrow
from pyiceberg.manifest import (
    DataFile,
    ManifestContent,
    ManifestEntry,
    ManifestFile,
    ManifestWriter,
    ManifestWriterV2,
    write_manifest,
)
from pyiceberg.schema import Schema
from pyiceberg.table import Table, TableProperties
from pyiceberg.table.snapshots import Operation, Summary
from pyiceberg.table.update import UpdateTableMetadata
from pyiceberg.table.update.snapshot import _OverwriteFiles, _SnapshotProducer
from pyiceberg.typedef import EMPTY_DICT, TableVersion
from pyiceberg.types import IntegerType, ListType, MapType, NestedField, StructType

PYICEBERG_VERSION = "0.12.0"


# -- nulls of nested lists and maps


class _NullKeepingProjection(pyiceberg_arrow.ArrowProjectionVisitor):
    """pyiceberg's projection, but a null list (or map) stays null whatever its items are."""

    def list(self, list_type: ListType, list_array: pa.Array | None, value_array: pa.Array | None) -> pa.Array | None:
        return _nulls_kept(list_array, super().list(list_type, list_array, value_array))

    def map(self, map_type: MapType, map_array: pa.Array | None, key_result: pa.Array | None,
            value_result: pa.Array | None) -> pa.Array | None:
        return _nulls_kept(map_array, super().map(map_type, map_array, key_result, value_result))


def _nulls_kept(source: pa.Array | None, projected: pa.Array | None) -> pa.Array | None:
    """`projected` with the validity of `source`, rebuilt under its own type (which carries the field ids)."""
    if source is None or projected is None or source.null_count == projected.null_count:
        return projected
    # A fresh offsets array: Arrow refuses a validity mask beside sliced offsets; they stay absolute
    # positions in the (unsliced) child arrays.
    offsets = pa.array(projected.offsets.to_numpy(zero_copy_only=False), type=projected.offsets.type)
    mask = source.is_null()
    if isinstance(projected, pa.MapArray):
        return pa.MapArray.from_arrays(offsets, projected.keys, projected.items, type=projected.type, mask=mask)
    return type(projected).from_arrays(offsets, projected.values, type=projected.type, mask=mask)


# Installed on import: every write and read of tabletopic goes through a module of tabletopic.catalog,
# whose package imports this one first (tabletopic/catalog/__init__.py).
pyiceberg_arrow.ArrowProjectionVisitor = _NullKeepingProjection  # type: ignore[misc]


# -- schemas and data files


def iceberg_schema_from_arrow(arrow_schema: pa.Schema) -> Schema:
    """`arrow_schema` as an Iceberg schema, converted as `Catalog.create_table` does (ids still to assign)."""
    return Catalog._convert_schema_if_needed(arrow_schema)


def check_arrow_schema(table: Table, arrow_schema: pa.Schema) -> None:
    """Raise ValueError unless rows of `arrow_schema` can be written to `table` as they are."""
    # pyiceberg.io.pyarrow is imported on first use, as pyiceberg does itself.
    from pyiceberg.io.pyarrow import _check_pyarrow_schema_compatible

    _check_pyarrow_schema_compatible(table.schema(), arrow_schema, format_version=table.format_version)


def data_files_from_arrow(table: Table, rows: pa.Table) -> list[DataFile]:
    """Parquet data files (with field ids) holding `rows`, written under `table`'s location and default
    spec, outside any transaction: the files outlive a failed commit attempt, and the next one reuses them."""
    from pyiceberg.io.pyarrow import _dataframe_to_data_files

    return list(_dataframe_to_data_files(table_metadata=table.metadata, df=rows, io=table.io))


def data_file_spec_id(data_file: DataFile, default: int) -> int:
    """The partition spec id `data_file` carries, or `default` when none was set (pyiceberg's writer sets none)."""
    spec_id: int = getattr(data_file, "_spec_id", default)
    return spec_id


# -- replace snapshots


def _replace_summary(producer: _SnapshotProducer, snapshot_properties: dict[str, str]) -> Summary:
    # pyiceberg totals summaries for append/overwrite/delete only; a replace totals like an overwrite.
    producer._operation = Operation.OVERWRITE
    try:
        summary = _SnapshotProducer._summary(producer, snapshot_properties)
    finally:
        producer._operation = Operation.REPLACE
    return Summary(Operation.REPLACE, **summary.additional_properties)


class _ReplaceFiles(_OverwriteFiles):
    def _summary(self, snapshot_properties: dict[str, str] = EMPTY_DICT) -> Summary:
        return _replace_summary(self, snapshot_properties)


def commit_overwrite_as_replace(table: Table, removed: list[DataFile], added: list[DataFile],
                                properties: dict[str, str]) -> None:
    """One `replace` snapshot on `main` made by pyiceberg's overwrite producer (it rewrites the manifests
    listing `removed` and adds one for `added`); raises CommitFailedException if the table moved since
    `table` was loaded. The caller switches pyiceberg's retries off."""
    transaction = table.transaction()
    producer = _ReplaceFiles(operation=Operation.REPLACE, transaction=transaction, io=table.io,
                             snapshot_properties=properties)
    for data_file in removed:
        producer.delete_data_file(data_file)
    for data_file in added:
        producer.append_data_file(data_file)
    producer.commit()
    transaction.commit_transaction()


class _PreparedSnapshot(_SnapshotProducer["_PreparedSnapshot"]):
    """A snapshot of manifests made beforehand, under a snapshot id fixed across attempts."""

    def __init__(self, table: Table, operation: Operation, snapshot_id: int, manifests: list[ManifestFile],
                 removed: Iterable[DataFile], added: Iterable[DataFile], properties: dict[str, str]) -> None:
        self.table_transaction = table.transaction()
        super().__init__(operation, self.table_transaction, table.io, snapshot_properties=properties)
        self._snapshot_id = snapshot_id
        self._prepared = manifests
        self._added_data_files = list(added)
        self._deleted_data_files = set(removed)

    def _manifests(self) -> list[ManifestFile]:
        return self._prepared

    def _deleted_entries(self) -> list[ManifestEntry]:
        return []

    def _existing_manifests(self) -> list[ManifestFile]:
        return []

    def _summary(self, snapshot_properties: dict[str, str] = EMPTY_DICT) -> Summary:
        if self._operation == Operation.REPLACE:
            return _replace_summary(self, snapshot_properties)
        return super()._summary(snapshot_properties)


class PreparedSnapshot:
    """A snapshot of `operation` made of `manifests` (written by the caller, all of the new snapshot's:
    its own and those it keeps from the parent) on `table`'s current snapshot, under `snapshot_id`.
    `removed` and `added` (data and delete files) only sum up the summary.

    `stage()` writes the manifest list and stages the snapshot in a transaction of its own; `commit()`
    sends it to the catalog and raises CommitFailedException if the table moved since `table` was
    loaded. pyiceberg deletes none of the files (the caller's manifests, the manifest lists) whatever
    happens: `manifest_lists` names those this snapshot wrote, for the caller to clean up."""

    def __init__(self, table: Table, operation: Operation, snapshot_id: int, manifests: list[ManifestFile],
                 removed: Iterable[DataFile], added: Iterable[DataFile], properties: dict[str, str]) -> None:
        self._producer = _PreparedSnapshot(table, operation, snapshot_id, manifests, removed, added, properties)

    def stage(self) -> None:
        # Not `producer.commit()`: that registers the producer with the transaction, whose commit loop
        # would then validate, rebuild and delete what it wrote on its own terms; the caller owns all three.
        UpdateTableMetadata.commit(self._producer)

    @property
    def manifest_lists(self) -> list[str]:
        return list(self._producer._written_manifest_lists)

    def commit(self) -> None:
        self._producer.table_transaction.commit_transaction()


class ReplaceSnapshot(PreparedSnapshot):
    """A `replace` snapshot (compaction): the same rows in other files; see `PreparedSnapshot`."""

    def __init__(self, table: Table, snapshot_id: int, manifests: list[ManifestFile], removed: Iterable[DataFile],
                 added: Iterable[DataFile], properties: dict[str, str]) -> None:
        super().__init__(table, Operation.REPLACE, snapshot_id, manifests, removed, added, properties)


# -- delete manifests


EQUALITY_IDS_FIELD_ID = 135


def _with_int_equality_ids(schema: Schema) -> Schema:
    """The manifest entry schema with `data_file.equality_ids` as the spec's list<int>: pyiceberg 0.12 writes
    list<long> (apache/iceberg-python#3840), which Iceberg's Java readers (Spark, Trino) fail to load with a
    ClassCastException once a delete file carries ids. pyiceberg reads both."""
    entry_fields = []
    for field in schema.fields:
        if isinstance(field.field_type, StructType) and field.field_type.field(EQUALITY_IDS_FIELD_ID) is not None:
            data_file = field.field_type
            fixed = [
                NestedField(f.field_id, f.name, ListType(f.field_type.element_id, IntegerType(), element_required=True),
                            required=f.required, doc=f.doc)
                if f.field_id == EQUALITY_IDS_FIELD_ID and isinstance(f.field_type, ListType) else f
                for f in data_file.fields
            ]
            field = NestedField(field.field_id, field.name, StructType(*fixed), required=field.required, doc=field.doc)
        entry_fields.append(field)
    return Schema(*entry_fields, schema_id=schema.schema_id)


class _DeleteManifestWriter(ManifestWriterV2):
    # pyiceberg 0.12's V2 writer records every manifest as `data`, in the manifest list and in its header.
    def content(self) -> ManifestContent:
        return ManifestContent.DELETES

    @property
    def _meta(self) -> dict[str, str]:
        return {**super()._meta, "content": "deletes"}

    def _with_partition(self, format_version: TableVersion) -> Schema:
        return _with_int_equality_ids(super()._with_partition(format_version))


def new_manifest_writer(table: Table, spec_id: int, snapshot_id: int, written: list[str],
                        deletes: bool = False) -> ManifestWriter:
    """A writer of one new manifest of `table` (data files, or delete files with `deletes`) under `spec_id`,
    for `snapshot_id`, compressed as the table says; its path is appended to `written` before anything is
    written, so a caller can delete it whatever happens. Delete manifests need a format v2 table."""
    path = table.location_provider().new_metadata_location(f"{uuid.uuid4()}-m0.avro")
    written.append(path)
    compression = table.metadata.properties.get(TableProperties.WRITE_AVRO_COMPRESSION,
                                                 TableProperties.WRITE_AVRO_COMPRESSION_DEFAULT)
    format_version = table.metadata.format_version
    spec, schema, output = table.specs()[spec_id], table.schema(), table.io.new_output(path)
    if not deletes:
        return write_manifest(format_version=format_version, spec=spec, schema=schema, output_file=output,
                              snapshot_id=snapshot_id, avro_compression=compression)  # type: ignore[arg-type]
    if format_version != 2:
        raise ValueError(f"delete manifests need a format v2 table, not v{format_version}")
    return _DeleteManifestWriter(spec, schema, output, snapshot_id,
                                 compression)  # type: ignore[arg-type]  # a table property, checked by pyiceberg
