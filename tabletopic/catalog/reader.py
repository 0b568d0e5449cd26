"""Reading a table's rows with every delete applied: the one reader of tables that may hold deletes
(../shared/DESIGN.md, "Upsert tables").

pyiceberg 0.12 refuses to plan a scan of a table holding equality deletes, so this module lists the
live files itself and applies the deletes as the Iceberg spec says: an equality delete removes the
rows of its keys from the data files of its scope whose data sequence number is *below* its own (rows
committed in the same snapshot as the delete survive); a position delete applies to data files of its
scope with a data sequence number at or below its own. The scope is the delete's spec and partition,
or every data file when the delete's spec is unpartitioned.

A table without delete manifests is read by `table.scan(...).to_arrow()`, as before deletes existed.
Public pyiceberg API only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa
from pyiceberg.expressions import AlwaysTrue, BooleanExpression
from pyiceberg.expressions.parser import parse
from pyiceberg.io.pyarrow import ArrowScan
from pyiceberg.manifest import DataFile, DataFileContent, ManifestContent, ManifestEntry, ManifestFile
from pyiceberg.partitioning import PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import FileScanTask, ManifestGroupPlanner, Table
from pyiceberg.table.metadata import INITIAL_SEQUENCE_NUMBER
from pyiceberg.table.snapshots import Snapshot

_ROW = "__tabletopic_reader_row"
ALWAYS_TRUE = AlwaysTrue()  # a singleton, as pyiceberg's own default


@dataclass(frozen=True)
class LiveFile:
    file: DataFile  # content DATA, POSITION_DELETES or EQUALITY_DELETES
    spec_id: int  # the manifest's partition_spec_id
    data_sequence_number: int  # the entry's (inherited or explicit): what deletes are compared by
    file_sequence_number: int | None


@dataclass(frozen=True)
class Listing:
    snapshot_id: int | None
    data: list[LiveFile]
    position_deletes: list[LiveFile]
    equality_deletes: list[LiveFile]


def live_files(table: Table, snapshot: Snapshot | None = None) -> Listing:
    """The live data and delete files of `snapshot` (default: the current one; none: an empty Listing)."""
    snapshot = snapshot if snapshot is not None else table.current_snapshot()
    if snapshot is None:
        return Listing(None, [], [], [])
    manifests = snapshot.manifests(table.io)
    return _listing(snapshot.snapshot_id, _entries(table, manifests))


def deletes_for(listing: Listing, data: LiveFile,
                specs: Mapping[int, PartitionSpec]) -> tuple[list[LiveFile], list[LiveFile]]:
    """(position deletes, equality deletes) of `listing` that apply to `data`."""
    position = [d for d in listing.position_deletes
                if d.data_sequence_number >= data.data_sequence_number and _in_scope(d, data, specs)]
    equality = [d for d in listing.equality_deletes
                if d.data_sequence_number > data.data_sequence_number and _in_scope(d, data, specs)]
    return position, equality


def has_deletes(listing: Listing) -> bool:
    return bool(listing.position_deletes or listing.equality_deletes)


def read(table: Table, columns: Sequence[str] | None = None, row_filter: BooleanExpression | str = ALWAYS_TRUE,
         files: Sequence[LiveFile] | None = None, snapshot: Snapshot | None = None) -> pa.Table:
    """The rows of `table` (or of just `files`, data files of `snapshot`'s listing) matching `row_filter`,
    `columns` only (None or "*": all), with every delete that applies removed. Columns follow the
    current schema. Without `files` or `snapshot` on a table without delete manifests: `table.scan`."""
    selected = ("*",) if columns is None or "*" in columns else tuple(columns)
    at = snapshot if snapshot is not None else table.current_snapshot()
    manifests = at.manifests(table.io) if at is not None else []
    if files is None and (snapshot is None or at == table.current_snapshot()) \
            and not any(m.content == ManifestContent.DELETES for m in manifests):
        return table.scan(row_filter=row_filter, selected_fields=selected).to_arrow()

    expression = parse(row_filter) if isinstance(row_filter, str) else row_filter
    schema = table.schema()
    projection = schema if selected == ("*",) else schema.select(*selected)
    if files is None:
        listing = _listing(at.snapshot_id if at is not None else None, _entries(table, manifests, expression))
        files = listing.data
    else:
        listing = _listing(at.snapshot_id if at is not None else None, _entries(table, manifests))
    specs = table.specs()
    # Files with the same equality deletes are read in one scan (pyiceberg reads its tasks in parallel).
    groups: dict[tuple[str, ...], list[FileScanTask]] = defaultdict(list)
    equality_of: dict[tuple[str, ...], list[LiveFile]] = {}
    for data in files:
        position, equality = deletes_for(listing, data, specs)
        key = tuple(sorted(d.file.file_path for d in equality))
        groups[key].append(FileScanTask(data.file, delete_files={d.file for d in position}))
        equality_of[key] = equality
    parts = [ArrowScan(table.metadata, table.io, projection, expression).to_table([])]
    key_rows: dict[str, pa.Table] = {}
    for key, tasks in groups.items():
        equality = equality_of[key]
        read_schema = _with_keys(schema, projection, equality)
        rows = ArrowScan(table.metadata, table.io, read_schema, expression).to_table(tasks)
        for ids, deletes in _by_equality_ids(equality).items():
            rows = _without_keys(rows, _key_rows(table, schema, ids, deletes, key_rows), _names(schema, ids))
        parts.append(rows.select([f.name for f in projection.fields]))
    return pa.concat_tables(parts, promote_options="permissive")


def data_file_sizes(table: Table) -> list[int]:
    """The sizes in bytes of the current snapshot's live data files."""
    return [f.file.file_size_in_bytes for f in live_files(table).data]


def _entries(table: Table, manifests: Sequence[ManifestFile],
             row_filter: BooleanExpression | None = None) -> Iterable[ManifestEntry]:
    """The live entries of `manifests`; with `row_filter`, data files that cannot hold a matching row left
    out (pyiceberg's own pruning, by partition and column bounds), delete files all kept."""
    data = [m for m in manifests if m.content == ManifestContent.DATA]
    deletes = [m for m in manifests if m.content == ManifestContent.DELETES]
    if row_filter is None or isinstance(row_filter, AlwaysTrue):
        data_entries: Iterable[ManifestEntry] = (e for m in data for e in m.fetch_manifest_entry(table.io))
    else:
        planner = ManifestGroupPlanner(table.metadata, table.io, row_filter)
        data_entries = (e for entries in planner.plan_manifest_entries(data) for e in entries)
    yield from data_entries
    for manifest in deletes:
        yield from manifest.fetch_manifest_entry(table.io, discard_deleted=True)


def _listing(snapshot_id: int | None, entries: Iterable[ManifestEntry]) -> Listing:
    by_content: dict[DataFileContent, list[LiveFile]] = defaultdict(list)
    for entry in entries:
        by_content[entry.data_file.content].append(LiveFile(
            file=entry.data_file,
            spec_id=entry.data_file.spec_id,  # set from the manifest's partition_spec_id as it is read
            data_sequence_number=entry.sequence_number if entry.sequence_number is not None
            else INITIAL_SEQUENCE_NUMBER,
            file_sequence_number=entry.file_sequence_number,
        ))
    return Listing(snapshot_id, by_content[DataFileContent.DATA], by_content[DataFileContent.POSITION_DELETES],
                   by_content[DataFileContent.EQUALITY_DELETES])


def _in_scope(delete: LiveFile, data: LiveFile, specs: Mapping[int, PartitionSpec]) -> bool:
    if specs[delete.spec_id].is_unpartitioned():
        return True
    return delete.spec_id == data.spec_id and delete.file.partition == data.file.partition


def _by_equality_ids(deletes: Iterable[LiveFile]) -> dict[tuple[int, ...], list[LiveFile]]:
    by_ids: dict[tuple[int, ...], list[LiveFile]] = defaultdict(list)
    for delete in deletes:
        by_ids[tuple(delete.file.equality_ids or ())].append(delete)
    return by_ids


def _names(schema: Schema, field_ids: Iterable[int]) -> list[str]:
    names = []
    for field_id in field_ids:
        name = schema.find_column_name(field_id)
        if name is None:
            raise ValueError(f"an equality delete is keyed on field id {field_id}, which the schema lacks")
        names.append(name)
    return names


def _with_keys(schema: Schema, projection: Schema, equality: Iterable[LiveFile]) -> Schema:
    """`projection` plus the key columns of `equality`, which the anti-join needs."""
    ids = {i for d in equality for i in d.file.equality_ids or ()}
    missing = ids - set(projection.field_ids)
    if not missing:
        return projection
    return schema.select(*(f.name for f in projection.fields), *_names(schema, sorted(missing)))


def _key_rows(table: Table, schema: Schema, ids: tuple[int, ...], deletes: Sequence[LiveFile],
              cache: dict[str, pa.Table]) -> pa.Table:
    """The distinct keys of `deletes` (equality deletes on field `ids`), each file read once per `read`."""
    names = _names(schema, ids)
    key_schema = schema.select(*names)
    for delete in deletes:
        path = delete.file.file_path
        if path not in cache:
            keys = ArrowScan(table.metadata, table.io, key_schema, AlwaysTrue()).to_table([FileScanTask(delete.file)])
            for name in names:
                if keys.column(name).null_count:
                    raise ValueError(f"equality delete {path} holds a null {name!r}: a null key matches no row here")
            cache[path] = keys.select(names)
    return pa.concat_tables([cache[d.file.file_path] for d in deletes], promote_options="permissive")


def _without_keys(rows: pa.Table, keys: pa.Table, names: list[str]) -> pa.Table:
    """`rows` whose `names` tuple is not among `keys`, in their order."""
    if rows.num_rows == 0 or keys.num_rows == 0:
        return rows
    keys = keys.cast(rows.select(names).schema)
    numbered = rows.append_column(_ROW, pa.array(range(rows.num_rows), pa.int64()))
    kept = numbered.select([*names, _ROW]).join(keys, keys=names, join_type="left anti")
    return rows.take(kept.sort_by(_ROW).column(_ROW))
