"""What an upsert commit writes besides its rows: equality-delete files on the key, and the one snapshot
that holds both (../shared/DESIGN.md, "Upsert tables").

An equality delete with data sequence number S removes the rows of its keys from data files whose data
sequence number is below S. The new rows are committed in the same snapshot, so they share S and
survive, while every older row of those keys goes. A delete applies only to data files of its own spec
and partition (or to all, under an unpartitioned spec): written under the table's spec, it is enough
only when every partition field is computed from key columns, so that a key lives in one partition.

pyiceberg 0.12 writes neither delete manifests nor snapshots of them: both come through
catalog.pyiceberg_private. Everything else here is pyiceberg's public API.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import pyarrow as pa
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.io.pyarrow import ParquetFormatModel, schema_to_pyarrow
from pyiceberg.manifest import (
    DataFile,
    DataFileContent,
    FileFormat,
    ManifestContent,
    ManifestEntry,
    ManifestEntryStatus,
    ManifestFile,
)
from pyiceberg.partitioning import PartitionFieldValue, PartitionKey, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Operation
from pyiceberg.typedef import Record

from tabletopic.catalog.pyiceberg_private import PreparedSnapshot, data_file_spec_id, new_manifest_writer
from tabletopic.commit.committer import for_our_commit
from tabletopic.commit.state_keys import over_state

_ROW = "__tabletopic_row"


def specs_with_data(table: Table) -> list[PartitionSpec]:
    """The default spec and every older one that still has data files in the current snapshot: after a
    partition change, a key's older rows sit under the spec they were written with, and a delete reaches
    only files of its own spec (or all, from an unpartitioned one)."""
    specs = table.specs()
    wanted = {table.metadata.default_spec_id}
    snapshot = table.current_snapshot()
    if snapshot is not None:
        wanted |= {m.partition_spec_id for m in snapshot.manifests(table.io)
                   if m.content == ManifestContent.DATA and (m.added_files_count or m.existing_files_count)}
    return [specs[spec_id] for spec_id in sorted(wanted)]


def write_equality_deletes(table: Table, keys: pa.Table, key_field_ids: Sequence[int],
                           specs: Sequence[PartitionSpec] | None = None) -> list[DataFile]:
    """Parquet equality-delete files (field ids, bounds and counts, `equality_ids` = `key_field_ids`) holding
    `keys`, one row per key to delete; `keys` has a column per key field, named as in `table`'s schema.

    Per spec of `specs` (default: the table's default spec): unpartitioned, one file (it applies to every
    data file, so it is the only one written); partitioned only by transforms of key columns, one file per
    partition the keys fall in. Any other spec raises ValueError: such a delete would miss the key's rows
    in other partitions (global deletes under a spec of their own are not written; the config is refused).
    Written outside any transaction, so a commit retried on a new base reuses them."""
    if not key_field_ids:
        raise ValueError("equality deletes need at least one key field")
    schema = table.schema()
    top_level = {f.field_id: f.name for f in schema.fields}
    names = []
    for field_id in key_field_ids:
        if field_id not in top_level:
            raise ValueError(f"key field id {field_id} is not a top-level column of {table.name()}")
        names.append(top_level[field_id])
    missing = [n for n in names if n not in keys.column_names]
    if missing:
        raise ValueError(f"the keys lack the key columns {missing}")
    specs = list(specs) if specs is not None else [table.spec()]
    for spec in specs:
        outside = [f.name for f in spec.fields if f.source_id not in key_field_ids]
        if outside:
            raise ValueError(
                f"{table.name()} is partitioned by {outside} (spec {spec.spec_id}), not computed from the key "
                f"columns {names}: an equality delete in one partition would miss the key's rows in the others"
            )
    keys = keys.select(names)
    for name in names:
        if keys.column(name).null_count:
            raise ValueError(f"key column {name!r} holds nulls: a null key cannot be deleted by equality")
    if keys.num_rows == 0:
        return []
    delete_schema = schema.select(*names)
    keys = keys.cast(schema_to_pyarrow(delete_schema))
    unpartitioned = [spec for spec in specs if spec.is_unpartitioned()]
    if unpartitioned:
        return [_write_delete_file(table, keys, delete_schema, key_field_ids, unpartitioned[0], None)]
    return [_write_delete_file(table, part, delete_schema, key_field_ids, spec, key)
            for spec in specs for key, part in _by_partition(keys, spec, schema)]


def _by_partition(keys: pa.Table, spec: PartitionSpec, schema: Schema) -> list[tuple[PartitionKey, pa.Table]]:
    """`keys` split by the partition of `spec` each key falls in."""
    columns = {}
    for i, field in enumerate(spec.fields):
        source = schema.find_field(field.source_id)
        columns[f"p{i}"] = field.transform.pyarrow_transform(source.field_type)(keys.column(source.name))
    partitions = pa.table({**columns, _ROW: pa.array(range(keys.num_rows), pa.int64())})
    groups = partitions.group_by(list(columns)).aggregate([(_ROW, "list")])
    split = []
    for group in groups.to_pylist():
        values = [PartitionFieldValue(field, group[f"p{i}"]) for i, field in enumerate(spec.fields)]
        split.append((PartitionKey(values, spec, schema), keys.take(pa.array(group[f"{_ROW}_list"], pa.int64()))))
    return split


def _write_delete_file(table: Table, keys: pa.Table, delete_schema: Schema, key_field_ids: Sequence[int],
                       spec: PartitionSpec, partition: PartitionKey | None) -> DataFile:
    path = table.location_provider().new_data_location(f"eq-deletes-{uuid.uuid4()}.parquet", partition)
    output = table.io.new_output(path)
    # The table's Parquet settings (codec, row group size, which columns get bounds) apply as for its data.
    with ParquetFormatModel().create_writer(output, delete_schema, table.metadata.properties) as writer:
        writer.write(keys)
    delete_file = DataFile.from_args(
        content=DataFileContent.EQUALITY_DELETES,
        file_path=path,
        file_format=FileFormat.PARQUET,
        partition=partition.partition if partition is not None else Record(),
        file_size_in_bytes=len(output),
        sort_order_id=None,
        equality_ids=list(key_field_ids),
        key_metadata=None,
        **writer.result().to_serialized_dict(),
    )
    delete_file.spec_id = spec.spec_id  # `from_args` drops a spec_id: it is no field of the file's struct
    return delete_file


def commit_upsert(table: Table, data_files: list[DataFile], delete_files: list[DataFile],
                  properties: dict[str, str]) -> int:
    """One snapshot on `main` holding a manifest of `data_files`, one of `delete_files` per spec, and the
    current snapshot's manifests; `properties` go into its summary. Operation `overwrite`, or `delete`
    for tombstones only, `append` with no files at all (it moves the offsets). Returns the new
    snapshot's id; raises CommitFailedException if the table moved since `table` was loaded (the
    manifests it wrote are deleted then: the caller retries on a new base with the same files)."""
    properties = over_state(table, properties)
    table = for_our_commit(table)
    snapshot_id = table.metadata.new_snapshot_id()
    written: list[str] = []
    try:
        manifests = [
            *_manifests(table, snapshot_id, data_files, False, written),
            *_manifests(table, snapshot_id, delete_files, True, written),
        ]
        parent = table.current_snapshot()
        if parent is not None:
            manifests += parent.manifests(table.io)
        operation = Operation.OVERWRITE if data_files else Operation.DELETE if delete_files else Operation.APPEND
        snapshot = PreparedSnapshot(table, operation, snapshot_id, manifests, [], [*data_files, *delete_files],
                                    properties)
        try:
            snapshot.stage()
        finally:
            written += snapshot.manifest_lists
        snapshot.commit()
    except CommitFailedException:
        for path in written:
            table.io.delete(path)
        raise
    return snapshot_id


def _manifests(table: Table, snapshot_id: int, files: list[DataFile], deletes: bool,
               written: list[str]) -> list[ManifestFile]:
    """One manifest per spec of `files`, as ADDED entries whose sequence numbers the commit assigns."""
    by_spec: dict[int, list[DataFile]] = {}
    default_spec_id = table.metadata.default_spec_id
    for data_file in files:
        by_spec.setdefault(data_file_spec_id(data_file, default_spec_id), []).append(data_file)
    manifests = []
    for spec_id, spec_files in sorted(by_spec.items()):
        with new_manifest_writer(table, spec_id, snapshot_id, written, deletes) as writer:
            for data_file in spec_files:
                writer.add_entry(ManifestEntry.from_args(status=ManifestEntryStatus.ADDED, snapshot_id=snapshot_id,
                                                         sequence_number=None, file_sequence_number=None,
                                                         data_file=data_file))
        manifests.append(writer.to_manifest_file())
    return manifests
