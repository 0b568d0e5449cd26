"""A batch of keyed changes → what one upsert commit writes: the surviving rows and the keys to delete.

Order holds only within one Kafka partition, so a key is expected to come from one partition. When a
batch still holds a key from several partitions, the highest (partition, offset) wins: arbitrary but
deterministic, and counted in `keys_in_several_partitions` so the caller can warn about it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tabletopic.core.metadata import OFFSET, PARTITION

_ROW = "__tabletopic..row"  # dotted: no key column can be named so
_DELETE = "__tabletopic..delete"


@dataclass(frozen=True)
class UpsertPlan:
    rows: pa.Table  # one row per key whose last change is an upsert, in input order; every input column
    delete_keys: pa.Table  # every distinct key the batch touches (updated or deleted): the key columns only
    rejected: list[int]  # input row indices with a null in a key column (dead letters, `missing_key`)
    keys_in_several_partitions: int


def check_key_type(name: str, type_: pa.DataType) -> None:
    """Iceberg identifier fields are primitives other than float/double."""
    allowed = (
        pa.types.is_integer(type_) or pa.types.is_string(type_) or pa.types.is_large_string(type_)
        or pa.types.is_binary(type_) or pa.types.is_large_binary(type_) or pa.types.is_fixed_size_binary(type_)
        or pa.types.is_boolean(type_) or pa.types.is_date(type_) or pa.types.is_time(type_)
        or pa.types.is_timestamp(type_) or pa.types.is_decimal(type_)
    )
    if not allowed:
        raise ValueError(f"key column {name!r} has type {type_}, which cannot be an Iceberg identifier field")


def _checked(table: pa.Table, key_columns: Sequence[str], deletes: Any) -> pa.BooleanArray:
    if not key_columns:
        raise ValueError("an upsert needs at least one key column")
    for name in [*key_columns, PARTITION, OFFSET]:
        if name not in table.column_names:
            raise ValueError(f"column {name!r} is missing from the batch")
    for name in key_columns:
        check_key_type(name, table.schema.field(name).type)
    if isinstance(deletes, pa.ChunkedArray):
        mask = deletes.combine_chunks()
    else:
        mask = deletes if isinstance(deletes, pa.Array) else pa.array(deletes, pa.bool_())
    if not pa.types.is_boolean(mask.type) or len(mask) != table.num_rows or mask.null_count:
        raise ValueError(f"the delete mask needs one true/false per row ({table.num_rows}), got {mask.type} "
                         f"of {len(mask)} with {mask.null_count} nulls")
    return mask


def plan_upsert(table: pa.Table, key_columns: Sequence[str], deletes: Any) -> UpsertPlan:
    """`deletes`: one boolean per row, true where the record deletes its key (tombstone, Debezium `d`)."""
    mask = _checked(table, key_columns, deletes)
    keys = list(key_columns)
    work = table.select([*keys, PARTITION, OFFSET]).append_column(_ROW, pa.array(range(table.num_rows), pa.int64()))
    work = work.append_column(_DELETE, mask)

    null_key = pc.is_null(work.column(keys[0]))
    for k in keys[1:]:
        null_key = pc.or_(null_key, pc.is_null(work.column(k)))
    rejected = pc.filter(work.column(_ROW), null_key).to_pylist()
    work = work.filter(pc.invert(null_key))

    # The sort is stable and a single-threaded group_by keeps the order inside each group, so "last" is the
    # highest (partition, offset), the later row on a tie.
    ordered = work.sort_by([(PARTITION, "ascending"), (OFFSET, "ascending")])
    winners = ordered.group_by(keys, use_threads=False).aggregate(
        [(_ROW, "last"), (_DELETE, "last"), (PARTITION, "min_max")]
    )
    kept = pc.filter(winners.column(f"{_ROW}_last"), pc.invert(winners.column(f"{_DELETE}_last")))
    rows = table.take(kept.take(pc.array_sort_indices(kept)))
    partitions = winners.column(f"{PARTITION}_min_max")
    several = pc.sum(pc.not_equal(pc.struct_field(partitions, "min"), pc.struct_field(partitions, "max"))).as_py()
    return UpsertPlan(
        rows=rows,
        delete_keys=winners.select(keys),
        rejected=rejected,
        keys_in_several_partitions=several or 0,
    )


def plan_upsert_reference(table: pa.Table, key_columns: Sequence[str], deletes: Any) -> UpsertPlan:
    """The same decision, one record at a time over a dict: the model the Arrow version is tested against."""
    mask = _checked(table, key_columns, deletes).to_pylist()
    latest: dict[tuple[Any, ...], tuple[tuple[int, int], int]] = {}
    partitions: dict[tuple[Any, ...], set[int]] = {}
    rejected = []
    for index, record in enumerate(table.select([*key_columns, PARTITION, OFFSET]).to_pylist()):
        key = tuple(record[k] for k in key_columns)
        if None in key:
            rejected.append(index)
            continue
        position = (record[PARTITION], record[OFFSET])
        if key not in latest or position >= latest[key][0]:
            latest[key] = (position, index)
        partitions.setdefault(key, set()).add(record[PARTITION])
    kept = sorted(index for _, index in latest.values() if not mask[index])
    key_schema = pa.schema([table.schema.field(k) for k in key_columns])
    return UpsertPlan(
        rows=table.take(pa.array(kept, pa.int64())),
        delete_keys=pa.Table.from_pylist([dict(zip(key_columns, key, strict=True)) for key in latest], key_schema),
        rejected=rejected,
        keys_in_several_partitions=sum(1 for seen in partitions.values() if len(seen) > 1),
    )
