"""Table rows from a chunk's decoded values, and the per-record checks around them. Pure."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from tabletopic.catalog.evolution import TooManyColumns
from tabletopic.core import metadata
from tabletopic.core.reasons import Reason
from tabletopic.core.records import RecordChunk
from tabletopic.decode.base import BadValue
from tabletopic.decode.isolate import describe
from tabletopic.decode.renames import RenameCollision
from tabletopic.exceptions import SchemaError


def oversized(chunk: RecordChunk, limit: int) -> list[BadValue]:
    """The records whose value is over `max_record_bytes`."""
    if max(map(len, filter(None, chunk.values)), default=0) <= limit:
        return []
    return [BadValue(i, f"value of {len(v)} bytes is over max_record_bytes ({limit})", Reason.OVERSIZED)
            for i, v in enumerate(chunk.values) if v is not None and len(v) > limit]


def culprit(index: int, exc: Exception) -> BadValue:
    """The bad value of a record its decoding, schema change or table creation raised on."""
    if isinstance(exc, TooManyColumns):
        return BadValue(index, str(exc), Reason.TOO_MANY_COLUMNS)
    if isinstance(exc, RenameCollision):  # a new table's first writer schema holds a renamed field and its target
        return BadValue(index, str(exc), Reason.RENAME_COLLISION)
    if isinstance(exc, SchemaError):  # our own check of a new table's or column's schema
        return BadValue(index, str(exc), Reason.INCOMPATIBLE_SCHEMA)
    return BadValue(index, describe(exc), Reason.DECODER_ERROR)


def assemble(chunk: RecordChunk, values: pa.Table, schema: pa.Schema, with_metadata: bool) -> pa.Table:
    """Rows in the table's `schema`: the decoded `values`, the `_kafka_*` columns of the chunk's
    records (`with_metadata`), nulls for the columns the records lack."""
    meta = metadata.metadata_arrays(chunk) if with_metadata else {}
    decoded = set(values.column_names)  # a set: tables of thousands of columns
    arrays = []
    for field in schema:
        if field.name in meta:
            array = meta[field.name]
        elif field.name in decoded:
            array = values[field.name]
        else:
            array = pa.nulls(len(chunk), field.type)
        if array.type != field.type:
            array = array.cast(field.type)
        arrays.append(array)
    return pa.Table.from_arrays(arrays, schema=schema)


def without_required_nulls(rows: pa.Table, good: list[int]) -> tuple[pa.Table, list[int], list[BadValue]]:
    """Rows with a null in a required column (tables created elsewhere can have them) are bad."""
    required = [f.name for f in rows.schema if not f.nullable]
    if not required or rows.num_rows == 0:
        return rows, good, []
    missing = pc.or_kleene(*[pc.is_null(rows[name]) for name in required]) if len(required) > 1 \
        else pc.is_null(rows[required[0]])
    if not pc.any(missing).as_py():
        return rows, good, []
    flags = missing.to_pylist()
    bad = [BadValue(good[i], f"null for a required column ({', '.join(required)})", Reason.NULL_REQUIRED)
           for i, flag in enumerate(flags) if flag]
    kept = [g for g, flag in zip(good, flags, strict=True) if not flag]
    return rows.filter(pc.invert(missing)), kept, bad
