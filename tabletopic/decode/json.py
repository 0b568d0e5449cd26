"""JSON values → Arrow, parsed a batch at a time by pyarrow.json against the table's schema.

The values of a batch are joined with newlines and parsed in one call. A batch that fails is
bisected down to its first bad value, which is then explained (malformed JSON, not an object,
type mismatch). Schemas pyarrow.json cannot parse into (maps) take a per-record path.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.json as pa_json

from tabletopic.decode.base import find_bad_value
from tabletopic.kafka.records import RecordChunk

# A null value (a tombstone) becomes a row whose value columns are all null.
_EMPTY_OBJECT = b"{}"
# One block for a whole poll batch: parsing is then a single pass with no block stitching.
_MIN_BLOCK_BYTES = 1 << 20


def _join(values: Sequence[bytes | None]) -> bytes:
    cleaned = [_EMPTY_OBJECT if v is None or not v.strip() else v for v in values]
    joined = b"\n".join(cleaned)
    if joined.count(b"\n") != len(cleaned) - 1 or b"\r" in joined:
        # Pretty-printed values: a raw newline is whitespace outside strings and illegal inside them.
        joined = b"\n".join(v.replace(b"\r", b" ").replace(b"\n", b" ") for v in cleaned)
    return joined


def _parse(values: Sequence[bytes | None], schema: pa.Schema | None) -> pa.Table:
    joined = _join(values)
    read_options = pa_json.ReadOptions(block_size=max(_MIN_BLOCK_BYTES, len(joined) + 1))
    parse_options = (
        pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
        if schema is not None
        else pa_json.ParseOptions()
    )
    return pa_json.read_json(io.BytesIO(joined), read_options=read_options, parse_options=parse_options)


def explain(value: bytes | None, error: Exception | None) -> str:
    if value is None:
        return "null value"
    try:
        parsed = json.loads(value)
    except (ValueError, UnicodeDecodeError) as exc:
        return f"malformed JSON: {exc}"
    if not isinstance(parsed, dict):
        return f"expected a JSON object, got {type(parsed).__name__}"
    if error is not None:
        return f"type mismatch: {error}"
    return "value does not fit the table schema"


def _has_map(data_type: pa.DataType) -> bool:
    if pa.types.is_map(data_type):
        return True
    if pa.types.is_struct(data_type):
        return any(_has_map(data_type.field(i).type) for i in range(data_type.num_fields))
    if pa.types.is_list(data_type) or pa.types.is_large_list(data_type):
        return _has_map(data_type.value_type)
    return False


def _parse_per_record(values: Sequence[bytes | None], schema: pa.Schema) -> pa.Table:
    rows = [{} if v is None else json.loads(v) for v in values]
    if any(not isinstance(row, dict) for row in rows):
        raise ValueError("a value is not a JSON object")
    return pa.Table.from_pylist(rows, schema=schema)


def _small(data_type: pa.DataType) -> pa.DataType:
    """pyarrow.json parses into 32-bit-offset types only; the caller casts to the table's types after."""
    if pa.types.is_large_string(data_type):
        return pa.string()
    if pa.types.is_large_binary(data_type):
        return pa.binary()
    if pa.types.is_large_list(data_type) or pa.types.is_list(data_type):
        return pa.list_(_small(data_type.value_type))
    if pa.types.is_struct(data_type):
        return pa.struct([_small_field(data_type.field(i)) for i in range(data_type.num_fields)])
    if pa.types.is_map(data_type):
        return pa.map_(_small(data_type.key_type), _small(data_type.item_type))
    return data_type


def _small_field(field: pa.Field) -> pa.Field:
    return pa.field(field.name, _small(field.type), nullable=True)


class JsonDecoder:
    """Decodes against a fixed Arrow schema: the table's value columns."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = pa.schema([_small_field(f) for f in schema])
        self._batch_path = not any(_has_map(f.type) for f in schema)

    def _decode_values(self, values: Sequence[bytes | None]) -> pa.Table:
        if self._batch_path:
            return _parse(values, self.schema)
        return _parse_per_record(values, self.schema)

    def decode(self, chunk: RecordChunk) -> pa.Table:
        values = chunk.values
        try:
            rows = self._decode_values(values)
        except (pa.ArrowInvalid, ValueError, TypeError, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            rows = None
        if rows is not None and rows.num_rows == len(values):
            return rows
        raise find_bad_value(values, self._decode_values, explain)


def infer_schema(values: Sequence[bytes | None]) -> pa.Schema:
    """The value schema of a new table, from its first batch.

    Numbers stay long or double, strings stay strings (no guessed timestamps: a timestamp
    column comes only from a table the user created), all-null and empty-object fields are left out.
    """
    try:
        inferred = _parse(values, None).schema
    except (pa.ArrowInvalid, ValueError):
        # The batch disagrees with itself; take the first decodable object's shape and let the
        # decode path name the records that do not fit it.
        inferred = pa.schema([])
        for value in values:
            try:
                inferred = _parse([value], None).schema
                break
            except (pa.ArrowInvalid, ValueError):
                continue
    fields = [f for f in (_settle(field) for field in inferred) if f is not None]
    return pa.schema(fields)


def _settle(field: pa.Field) -> pa.Field | None:
    settled = _settle_type(field.type)
    return None if settled is None else pa.field(field.name, settled, nullable=True)


def _settle_type(data_type: pa.DataType) -> pa.DataType | None:
    if pa.types.is_null(data_type):
        return None
    if pa.types.is_timestamp(data_type) or pa.types.is_date(data_type) or pa.types.is_time(data_type):
        return pa.string()
    if pa.types.is_struct(data_type):
        children = [f for f in (_settle(data_type.field(i)) for i in range(data_type.num_fields)) if f is not None]
        return pa.struct(children) if children else None
    if pa.types.is_list(data_type):
        item = _settle_type(data_type.value_type)
        return None if item is None else pa.list_(item)
    return data_type
