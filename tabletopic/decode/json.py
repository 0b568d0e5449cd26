"""JSON values → Arrow, parsed a batch at a time by pyarrow.json against the table's schema.

The values of a batch are joined with newlines and parsed in one call, with fields the table
does not have treated by the table's drift policy: `evolve` asks the sink to add them as
columns first (SchemaDrift), `strict` makes their records dead letters, `ignore` drops them
and counts the records that had them. A batch that still fails is split down to its bad
values, each explained with a reason code. Schemas pyarrow.json cannot parse into (maps) take
a per-record path, which ignores unknown fields under every policy.

Before any parser sees them, values nested too deep (a parser's stack overflows) and values holding
an integer outside the 64-bit range are set apart as dead letters (decode/json_guard.py). A field
name no column may have never reaches a schema: it is pruned from every inferred schema, and the
records carrying it are dead letters `bad_field_name` when the table would take new fields from them.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable, Sequence
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from tabletopic.catalog.evolution import plan_evolution
from tabletopic.core.reasons import Reason
from tabletopic.core.records import RecordChunk
from tabletopic.decode.base import BadValue, Decoded, SchemaDrift, split_bad_values
from tabletopic.decode.json_check import Checker, NeedsParser, json_checker, parser_type
from tabletopic.decode.json_guard import (
    integer_out_of_range,
    may_hold_long_integer,
    schema_name_problems,
    too_deep,
    too_deep_message,
    value_name_problem,
    without_bad_names,
)
from tabletopic.decode.wire import looks_framed, schema_id_of

Drift = Literal["evolve", "strict", "ignore"]
_PARSE_ERRORS = (pa.ArrowInvalid, ValueError, TypeError, OverflowError, pa.ArrowTypeError,
                 pa.ArrowNotImplementedError)

# A null value (a tombstone) becomes a row whose value columns are all null.
_EMPTY_OBJECT = b"{}"
# What a value that is not an object is parsed as: an error, so the split names it. pyarrow.json reads
# the JSON text `null` as a row of nulls, and crashes the process (pyarrow 26) on a batch of only that.
_NOT_AN_OBJECT = b"!"
# One block for a whole poll batch: parsing is then a single pass with no block stitching.
_MIN_BLOCK_BYTES = 1 << 20


def _cleaned(value: bytes | None) -> bytes:
    if value is None:
        return _EMPTY_OBJECT
    start = value.lstrip()[:1]
    if not start:
        return _EMPTY_OBJECT  # a blank value, as a tombstone
    return value if start == b"{" else _NOT_AN_OBJECT


def _join(values: Sequence[bytes | None], clean: bool) -> bytes:
    """One value per line; `clean`: null and blank values as `{}` and the ones that are not a JSON object
    as a parse error (else the caller has checked that every value starts with `{` or cannot parse)."""
    cleaned = [_cleaned(v) for v in values] if clean else values
    joined = b"\n".join(cleaned)  # type: ignore[arg-type]
    if joined.count(b"\n") != len(cleaned) - 1 or b"\r" in joined:
        # Pretty-printed values: a raw newline is whitespace outside strings and illegal inside them.
        joined = b"\n".join(v.replace(b"\r", b" ").replace(b"\n", b" ") for v in cleaned)  # type: ignore[union-attr]
    return joined


def _parse(values: Sequence[bytes | None], schema: pa.Schema | None, unknown: str = "ignore") -> pa.Table:
    """The values' rows. Every value is one line starting with `{`, which gives at least one row or an
    error (a blank value would give none: those are joined as `{}`), so as many rows as values means
    one row per value; a value holding two objects gives a row too many, which the caller splits out."""
    # The common batch (every value starts with `{`, or with a byte above it that cannot parse: the
    # smallest value says, found by min() in C) is joined as it is, without a pass in Python.
    fast = all(values) and min(values, default=b"{")[0] >= 0x7B  # type: ignore[type-var,index]
    return _read(_join(values, clean=not fast), schema, unknown)


def _read(joined: bytes, schema: pa.Schema | None, unknown: str) -> pa.Table:
    read_options = pa_json.ReadOptions(block_size=max(_MIN_BLOCK_BYTES, len(joined) + 1))
    parse_options = (
        pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior=unknown)
        if schema is not None
        else pa_json.ParseOptions()
    )
    return pa_json.read_json(io.BytesIO(joined), read_options=read_options, parse_options=parse_options)


def _holds_type(data_type: pa.DataType, wanted: Callable[[pa.DataType], bool]) -> bool:
    """Whether `data_type` is, or holds at any depth (struct fields, list items, map values), a `wanted` type."""
    if wanted(data_type):
        return True
    if pa.types.is_struct(data_type):
        return any(_holds_type(data_type.field(i).type, wanted) for i in range(data_type.num_fields))
    if pa.types.is_list(data_type) or pa.types.is_large_list(data_type):
        return _holds_type(data_type.value_type, wanted)
    if pa.types.is_map(data_type):
        return _holds_type(data_type.item_type, wanted)
    return False


def _holds_huge_floats(rows: pa.Table) -> bool:
    """Whether a float anywhere in `rows` is at least 2^63 in size (an integer literal past int64 reads so)."""
    leaves = [leaf for column in rows.columns for chunk in column.chunks for leaf in _float_leaves(chunk)]
    return any((pc.max(pc.abs(leaf)).as_py() or 0) >= 2.0 ** 63 for leaf in leaves)


def _float_leaves(array: pa.Array) -> list[pa.Array]:
    if pa.types.is_floating(array.type):
        return [array]
    if pa.types.is_struct(array.type):
        return [leaf for i in range(array.type.num_fields) for leaf in _float_leaves(array.field(i))]
    if pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
        return _float_leaves(array.flatten())
    if pa.types.is_map(array.type):
        return _float_leaves(array.items)
    return []


def hostile_values(values: Sequence[bytes | None], known: pa.DataType | None = None) -> dict[int, BadValue]:
    """The values no parser may see (nested too deep) or no column takes as they are (an integer
    outside the 64-bit range, unless `known`, the table's struct type, has a decimal column for it), by index."""
    bad = {i: BadValue(i, too_deep_message(values[i]), Reason.TOO_DEEP)  # type: ignore[arg-type]
           for i in too_deep(values)}
    if may_hold_long_integer(values):
        for index, value in enumerate(values):
            if value is not None and index not in bad and (message := integer_out_of_range(value, known)) is not None:
                bad[index] = BadValue(index, message, Reason.TYPE_MISMATCH)
    return bad


def _parse_per_record(values: Sequence[bytes | None], schema: pa.Schema, check: Checker) -> pa.Table:
    rows = [{} if v is None or not v.strip() else json.loads(v) for v in values]  # blank: as the batch path
    for row in rows:
        if not isinstance(row, dict):
            raise ValueError("a value is not a JSON object")
        with contextlib.suppress(NeedsParser):  # timestamps and the like: Arrow's conversion decides
            check(row)  # Misfit (a ValueError): from_pylist would truncate 1.5 into a long column
    return pa.Table.from_pylist(rows, schema=schema)


class JsonDecoder:
    """Decodes against a fixed Arrow schema (the table's value columns) under a drift policy."""

    def __init__(self, schema: pa.Schema, drift: Drift = "evolve") -> None:
        self.table_schema = schema
        # The table's types, but lists as 32-bit lists (pyarrow.json makes no large list): assembling the rows
        # widens their offsets, nothing else is cast.
        self.schema = pa.schema([pa.field(f.name, parser_type(f.type), nullable=True) for f in schema])
        self.drift = drift
        self._unknown = "ignore" if drift == "ignore" else "error"
        self._batch_path = not any(_holds_type(f.type, pa.types.is_map) for f in schema)
        # pyarrow.json refuses an integer past int64 for an integer column, but reads it as a double
        # into a float one: a batch with a float of that size is screened for long integers.
        self._screen_integers = any(_holds_type(f.type, pa.types.is_floating) for f in schema)
        self._known = pa.struct(list(schema))
        self._check = json_checker(self._known, "(value)")
        self._missed: list[pa.Schema] = []  # new-field schemas found one value at a time

    def _decode_values(self, values: Sequence[bytes | None], unknown: str | None = None) -> pa.Table:
        if self._batch_path:
            return _parse(values, self.schema, unknown or self._unknown)
        return _parse_per_record(values, self.schema, self._check)

    def decode(self, chunk: RecordChunk, allow_drift: bool = True) -> Decoded:
        values = chunk.values
        fast = not too_deep(values)
        rows: pa.Table | None = None
        if fast:
            try:
                parsed = self._decode_values(values, "error")
                rows = parsed if parsed.num_rows == len(values) else None
            except _PARSE_ERRORS:
                pass
            if rows is not None and not (self._screen_integers and _holds_huge_floats(rows)):
                return Decoded(rows)
        hostile = hostile_values(values, self._known)
        if not hostile:
            return Decoded(rows) if rows is not None else self._decode_slowly(values, allow_drift, fast_tried=fast)
        kept = [i for i in range(len(values)) if i not in hostile]
        decoded = self._decode_slowly([values[i] for i in kept], allow_drift, fast_tried=False)
        good = kept if decoded.good is None else [kept[i] for i in decoded.good]
        bad = sorted([*hostile.values(), *(b.at(kept[b.index]) for b in decoded.bad)], key=lambda b: b.index)
        return Decoded(decoded.rows, good, bad, decoded.dropped_fields)

    def _decode_slowly(self, values: Sequence[bytes | None], allow_drift: bool, fast_tried: bool = True) -> Decoded:
        """`values` (none of them hostile) when the one-pass parse failed on them (or was not tried)."""
        if not values:
            return Decoded(self.schema.empty_table(), [], [])
        if not fast_tried:
            try:
                rows = self._decode_values(values, "error")
                if rows.num_rows == len(values):
                    return Decoded(rows)
            except _PARSE_ERRORS:
                pass
        if self.drift == "ignore":
            try:
                rows = self._decode_values(values)
                if rows.num_rows == len(values):
                    return Decoded(rows, dropped_fields=self._count_unknown(values))
            except _PARSE_ERRORS:
                pass
        elif self.drift == "evolve" and allow_drift:
            incoming = self._batch_new_fields(values)
            if incoming is not None:
                raise SchemaDrift(incoming, additions_only=True)
        self._missed = []
        decoded = split_bad_values(values, self._decode_values, self._explain, self.schema)
        if self._missed and allow_drift:
            incoming = self._with_new_fields(self._missed)
            if incoming is not None:
                raise SchemaDrift(incoming, additions_only=True)
        return decoded

    def _batch_new_fields(self, values: Sequence[bytes | None]) -> pa.Schema | None:
        """New fields from the whole batch's inferred schema, if the batch parses as one value per row."""
        try:
            inferred = _parse(values, None)
        except _PARSE_ERRORS:
            return None  # values disagree: the split below finds new fields value by value
        if inferred.num_rows != len(values):
            return None
        return self._with_new_fields([_settled(inferred.schema)])

    def _with_new_fields(self, inferred: list[pa.Schema]) -> pa.Schema | None:
        """The table schema plus the compatible new fields of `inferred`; None if there are none."""
        target, changed = self.table_schema, False
        for schema in inferred:
            plan = plan_evolution(target, _settled(without_bad_names(schema, target)), additions_only=True)
            target, changed = plan.target, changed or bool(plan.changes)
        return target if changed else None

    def _count_unknown(self, values: Sequence[bytes | None]) -> int:
        """How many values carry top-level fields the table does not have."""
        try:
            inferred = _parse(values, None)
        except _PARSE_ERRORS:
            return 0
        known = set(self.schema.names)
        unknown = [inferred[name] for name in inferred.column_names if name not in known]
        if not unknown:
            return 0
        present = pa.array([False] * len(values))
        for column in unknown:
            present = pc.or_(present, pc.is_valid(column))
        return int(pc.sum(present).as_py() or 0)

    def _explain(self, index: int, value: bytes | None, error: Exception | None) -> BadValue:
        if value is None:
            return BadValue(index, "null value", Reason.MALFORMED_JSON)
        try:
            parsed = json.loads(value)
        except (ValueError, UnicodeDecodeError) as exc:
            if looks_framed(value):  # JSON text never starts with byte 0: a registered schema's wire format
                return BadValue(index, f"malformed JSON: it starts with byte 0 and schema id "
                                       f"{schema_id_of(value)}, the wire format of a registered JSON "
                                       "Schema: set json_schema: true on the table", Reason.MALFORMED_JSON)
            return BadValue(index, f"malformed JSON: {exc}", Reason.MALFORMED_JSON)
        if not isinstance(parsed, dict):
            return BadValue(index, f"expected a JSON object, got {type(parsed).__name__}", Reason.MALFORMED_JSON)
        if self._unknown == "error" and self._batch_path:  # a table that would take new fields from it
            problem = value_name_problem(value, self._known)
            if problem is not None:
                return BadValue(index, problem, Reason.BAD_FIELD_NAME)
        if self._unknown == "error" and self._fits_without_unknown_fields(value):
            return self._explain_new_fields(index, value)
        return BadValue(index, f"type mismatch: {error}", Reason.TYPE_MISMATCH)

    def _fits_without_unknown_fields(self, value: bytes) -> bool:
        try:
            return bool(self._decode_values([value], "ignore").num_rows == 1)
        except _PARSE_ERRORS:
            return False

    def _explain_new_fields(self, index: int, value: bytes) -> BadValue:
        plan = plan_evolution(self.table_schema, infer_schema([value]), additions_only=True)
        if self.drift == "strict":
            added = ", ".join(change.removeprefix("add ") for change in plan.changes) or "nested"
            return BadValue(index, f"fields the table does not have (drift policy strict): {added}",
                            Reason.UNKNOWN_FIELD)
        if plan.incompatible:
            return BadValue(index, "; ".join(plan.incompatible), Reason.INCOMPATIBLE_SCHEMA)
        self._missed.append(infer_schema([value]))
        return BadValue(index, f"new fields the table did not take: {plan.changes}", Reason.INCOMPATIBLE_SCHEMA)


def infer_schema(values: Sequence[bytes | None]) -> pa.Schema:
    """The value schema of a new table, from its first batch.

    Numbers stay long or double, strings stay strings (no guessed timestamps: a timestamp
    column comes only from a table the user created), all-null and empty-object fields are left out.
    Values the decoder refuses whatever the schema (too deep, a long integer, a field name no column
    may have) have no say in it.
    """
    hostile = hostile_values(values)
    usable = [v for i, v in enumerate(values) if i not in hostile]
    inferred = _infer(usable)
    if schema_name_problems(inferred):
        usable = [v for v in usable if value_name_problem(v) is None]
        inferred = _infer(usable)
    return _settled(without_bad_names(inferred))


def _infer(values: Sequence[bytes | None]) -> pa.Schema:
    if not values:
        return pa.schema([])
    try:
        return _parse(values, None).schema
    except (pa.ArrowInvalid, ValueError):
        pass
    # Some values do not parse (the decode path names them): the shape of those that do; if these
    # disagree with each other, the first one's shape, and the decode path names those that do not fit.
    shapes = []
    for value in values:
        try:
            shapes.append((value, _parse([value], None).schema))
        except (pa.ArrowInvalid, ValueError):
            continue
    if not shapes:
        return pa.schema([])
    try:
        return _parse([value for value, _ in shapes], None).schema
    except (pa.ArrowInvalid, ValueError):
        return shapes[0][1]


def _settled(inferred: pa.Schema) -> pa.Schema:
    return pa.schema([f for f in (_settle(field) for field in inferred) if f is not None])


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
