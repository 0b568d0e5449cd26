"""JSON values under a registered JSON Schema, in the Confluent wire format (magic byte 0, a 4-byte
big-endian schema id, the JSON text) → Arrow.

Each value is validated against the schema of its own id (jsonschema-rs, formats checked): one that
violates it is a dead letter `schema_violation` naming the validator's complaint. The valid values of
each schema id are parsed at once by pyarrow.json into that id's columns (json_schema_types.py), the
dates and timestamps read as text and cast; a group the batch read refuses, or whose dates fall
outside years 1-9999, is converted value by value instead (`reference_rows`, the reference the batch
read is tested against), which names each value that does not fit. Each id's schema is checked against
the table once, as for Avro: one the table can take with a change raises SchemaDrift first, one it
cannot take makes its records dead letters `incompatible_schema`.

A remote `$ref` is never fetched: the registry's text under the id is the whole schema.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import jsonschema_rs
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from tabletopic.catalog.evolution import EvolutionPlan, plan_evolution
from tabletopic.core.conform import conform_table
from tabletopic.core.reasons import Reason
from tabletopic.core.records import RecordChunk
from tabletopic.decode.base import BadValue, Decoded, raise_if_drift
from tabletopic.decode.json_check import parser_type
from tabletopic.decode.json_guard import INT64_MAX, INT64_MIN, too_deep, too_deep_message
from tabletopic.decode.json_schema_types import arrow_schema_of
from tabletopic.decode.wire import HEADER, looks_framed, schema_id_of
from tabletopic.exceptions import SchemaError, SourceUnavailable
from tabletopic.kafka.registry import SchemaTexts, UnknownSchemaId

HEADER_SIZE = HEADER.size
# A validator's message quotes the offending value, which may be the whole record.
MAX_MESSAGE_CHARS = 300


def _schema_id(value: bytes) -> int:
    return schema_id_of(value)


class UnreadableJsonSchema(Exception):
    """The registry's text under this id is not a JSON Schema the validator compiles (not JSON, a remote
    `$ref`, an invalid keyword): its records are dead letters."""

    def __init__(self, schema_id: int, error: str) -> None:
        super().__init__(f"the JSON Schema cannot be read: {error}")
        self.schema_id = schema_id


@dataclass(frozen=True)
class RegisteredJsonSchema:
    schema_id: int
    document: Any  # the schema, parsed
    validator: Any  # a compiled jsonschema_rs validator


def _refuse_remote(uri: str) -> Any:
    raise ValueError(f"a remote $ref is never fetched ({uri})")


class JsonSchemas:
    """JSON Schemas by id, parsed and compiled once."""

    def __init__(self, registry: SchemaTexts) -> None:
        self._registry = registry
        self._compiled: dict[int, RegisteredJsonSchema] = {}
        self._unreadable: dict[int, UnreadableJsonSchema] = {}

    @property
    def registry(self) -> SchemaTexts:
        return self._registry

    def registered(self, schema_id: int) -> RegisteredJsonSchema:
        """Raises UnknownSchemaId, UnreadableJsonSchema or RegistryUnavailable."""
        found = self._compiled.get(schema_id)
        if found is not None:
            return found
        if schema_id in self._unreadable:
            raise self._unreadable[schema_id]
        text = self._registry.schema_text(schema_id)
        try:
            document = json.loads(text)
            validator = jsonschema_rs.validator_for(document, validate_formats=True, retriever=_refuse_remote)
        except Exception as exc:  # whatever the parser or the validator's compiler refuses, however it says so
            message = str(exc).split("\n", 1)[0]
            self._unreadable[schema_id] = UnreadableJsonSchema(schema_id, f"{type(exc).__name__}: {message}")
            raise self._unreadable[schema_id] from None
        found = self._compiled[schema_id] = RegisteredJsonSchema(schema_id, document, validator)
        return found


def first_json_schema(schemas: JsonSchemas, values: Sequence[bytes | None]) -> RegisteredJsonSchema | None:
    """The schema of the first value whose id has a readable one, for creating a table."""
    for value in values:
        if not looks_framed(value):
            continue
        assert value is not None
        try:
            return schemas.registered(_schema_id(value))
        except (UnknownSchemaId, UnreadableJsonSchema):
            continue
    return None


def json_schema_arrow_schema(schema: RegisteredJsonSchema) -> pa.Schema:
    """The value columns of a new table from its records' registered schema; SchemaError names a field
    with no column type."""
    return arrow_schema_of(schema.document)


@dataclass
class _Group:
    """The valid values of one schema id (or the tombstones, id None), in the batch's order."""

    indexes: list[int]
    bodies: list[bytes]
    documents: list[Any]


class JsonSchemaDecoder:
    """Decodes each value with the schema of its own id; a batch may mix schema versions."""

    def __init__(self, schemas: JsonSchemas, arrow_schema: pa.Schema, reference_only: bool = False) -> None:
        """`reference_only`: every value through the per-record conversion, never the batch read (audit --values)."""
        self._schemas = schemas
        self._reference_only = reference_only
        self.schema = arrow_schema
        self._plans: dict[int, EvolutionPlan] = {}
        self._columns: dict[int, pa.Schema] = {}  # each id's own columns
        self._names: dict[int, frozenset[str]] = {}  # and their names

    def _plan(self, schema_id: int) -> EvolutionPlan:
        plan = self._plans.get(schema_id)
        if plan is None:
            try:
                registered = self._schemas.registered(schema_id)
                incoming = arrow_schema_of(registered.document)
                self._columns[schema_id] = incoming
                self._names[schema_id] = frozenset(incoming.names)
                plan = plan_evolution(self.schema, incoming)
            except (UnknownSchemaId, SourceUnavailable):
                raise
            except (UnreadableJsonSchema, SchemaError) as exc:
                plan = EvolutionPlan(self.schema, incompatible=[str(exc)])
            except Exception as exc:  # a schema nobody foresaw: its records are dead letters, never a crash loop
                plan = EvolutionPlan(self.schema, incompatible=[f"planning failed: {type(exc).__name__}: {exc}"])
            self._plans[schema_id] = plan
        return plan

    def decode(self, chunk: RecordChunk, allow_drift: bool = True) -> Decoded:
        values = chunk.values
        if allow_drift:
            self._raise_if_drift(values)
        groups, bad, dropped = self._validated(values)
        parts: list[pa.Table] = []
        order: list[int] = []
        for schema_id, group in groups.items():
            if schema_id is None:
                rows = _null_rows(self.schema, len(group.indexes))
                kept = group.indexes
            else:
                rows, kept, refused = self._rows(schema_id, group)
                bad.extend(refused)
            parts.append(rows)
            order.extend(kept)
        if not parts:
            return Decoded(self.schema.empty_table(), [] if bad else None, sorted(bad, key=lambda b: b.index), dropped)
        rows = pa.concat_tables(parts)
        if len(parts) > 1:
            rows = rows.take(pc.sort_indices(pa.array(order, pa.int64())))
        good = sorted(order) if bad else None
        return Decoded(rows, good, sorted(bad, key=lambda b: b.index), dropped)

    def _raise_if_drift(self, values: Sequence[bytes | None]) -> None:
        ids = {_schema_id(v) for v in values if looks_framed(v)}  # type: ignore[arg-type]
        raise_if_drift(self.schema, self._known_plans(sorted(ids)))

    def _known_plans(self, schema_ids: Iterable[int]) -> Iterator[EvolutionPlan]:
        """The plans of the ids the registry knows (an unknown id's records are dead letters, not drift)."""
        for schema_id in schema_ids:
            with contextlib.suppress(UnknownSchemaId):
                yield self._plan(schema_id)

    def _validated(self, values: Sequence[bytes | None]) -> tuple[dict[int | None, _Group], list[BadValue], int]:
        """The valid values grouped by schema id (tombstones under None), the bad ones, and how many of the
        valid ones carry top-level fields their schema does not describe."""
        bodies = [v[HEADER_SIZE:] if looks_framed(v) else None for v in values]  # type: ignore[index]
        # Nesting no parser survives is found before any sees it; integers past 64 bits are refused by the
        # conversion (batch_rows falls back to it on a float of that size).
        hostile = {i: BadValue(i, too_deep_message(bodies[i]), Reason.TOO_DEEP)  # type: ignore[arg-type]
                   for i in too_deep(bodies)}
        groups: dict[int | None, _Group] = {}
        bad: list[BadValue] = []
        dropped = 0
        for index, value in enumerate(values):
            try:
                schema_id, body, document = self._check(index, value, bodies[index], hostile)
            except BadValue as exc:
                bad.append(exc)
                continue
            group = groups.setdefault(schema_id, _Group([], [], []))
            group.indexes.append(index)
            if schema_id is not None:
                group.bodies.append(body)
                group.documents.append(document)
                if not document.keys() <= self._names[schema_id]:
                    dropped += 1
        return groups, bad, dropped

    def _check(self, index: int, value: bytes | None, body: bytes | None,
               hostile: dict[int, BadValue]) -> tuple[int | None, bytes, Any]:
        """(schema id, body, parsed document) of a valid value, (None, ...) for a tombstone; else raises BadValue."""
        if value is None:
            return None, b"", None
        if body is None:
            raise BadValue(index, "not the Confluent wire format (no magic byte 0 and 4-byte schema id)",
                           Reason.NOT_WIRE_FORMAT)
        schema_id = _schema_id(value)
        try:
            plan = self._plan(schema_id)
        except UnknownSchemaId:
            raise BadValue(index, f"unknown schema id {schema_id}", Reason.UNKNOWN_SCHEMA_ID, schema_id) from None
        if plan.incompatible:
            raise BadValue(index, f"schema id {schema_id}: " + "; ".join(plan.incompatible),
                           Reason.INCOMPATIBLE_SCHEMA, schema_id)
        if plan.needs_change:
            raise BadValue(index, f"schema id {schema_id} needs a table change that did not land: {plan.changes}",
                           Reason.INCOMPATIBLE_SCHEMA, schema_id)
        if index in hostile:
            refused = hostile[index]
            raise BadValue(index, f"schema id {schema_id}: {refused.reason}", refused.code, schema_id)
        try:
            document = _JSON.decode(body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadValue(index, f"malformed JSON (schema id {schema_id}): {exc}", Reason.MALFORMED_JSON,
                           schema_id) from None
        violation = self._violation(schema_id, document)
        if violation is not None:
            raise BadValue(index, f"schema id {schema_id}: {violation}", Reason.SCHEMA_VIOLATION, schema_id)
        if not isinstance(document, dict):
            raise BadValue(index, f"expected a JSON object, got {type(document).__name__} (schema id {schema_id})",
                           Reason.MALFORMED_JSON, schema_id)
        return schema_id, body, document

    def _violation(self, schema_id: int, document: Any) -> str | None:
        validator = self._schemas.registered(schema_id).validator
        try:
            if validator.is_valid(document):
                return None
            error = next(iter(validator.iter_errors(document)))
        except StopIteration:
            return None
        except Exception as exc:  # the validator failing on a value is that value's problem, never a crash loop
            return _cut(f"the validator failed: {type(exc).__name__}: {exc}")
        where = "/".join(str(part) for part in error.instance_path)
        return _cut(f"violates its JSON Schema at /{where}: {error.message}")

    def _rows(self, schema_id: int, group: _Group) -> tuple[pa.Table, list[int], list[BadValue]]:
        """The table's rows for one id's valid values: read at once, else one value at a time."""
        columns = self._columns[schema_id]
        rows = None if self._reference_only else batch_rows(group.bodies, columns)
        if rows is not None:
            return conform_table(rows, self.schema), group.indexes, []
        converted, refused = reference_rows(group.documents, columns)
        kept = [group.indexes[i] for i in range(len(group.indexes)) if i not in refused]
        bad = [BadValue(group.indexes[i], f"schema id {schema_id}: {reason}", Reason.TYPE_MISMATCH, schema_id)
               for i, reason in refused.items()]
        return conform_table(converted, self.schema), kept, bad


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_JSON = json.JSONDecoder(parse_constant=_refuse_constant)  # one decoder: json.loads would build one per call


def _cut(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_CHARS else f"{text[:MAX_MESSAGE_CHARS]}… ({len(text)} characters)"


def _null_rows(schema: pa.Schema, count: int) -> pa.Table:
    """Rows of nulls: tombstones, as for every other format."""
    if len(schema):
        return pa.table([pa.nulls(count, f.type) for f in schema], schema=schema)
    return pa.table({"_": pa.nulls(count)}).drop_columns(["_"])


# --- the batch read ------------------------------------------------------------------------------

_READ_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, ValueError, TypeError,
                OverflowError)
_MIN_BLOCK_BYTES = 1 << 20
# Years 1 to 9999: what every engine (and Python) holds; pyarrow parses year 0 and 10000 too.
_MIN_MICROS = -62_135_596_800_000_000
_MAX_MICROS = 253_402_300_799_999_999
_MIN_DAYS, _MAX_DAYS = -719_162, 2_932_896


def batch_rows(bodies: Sequence[bytes], columns: pa.Schema) -> pa.Table | None:
    """Valid JSON objects read at once into `columns` (fields they have beyond those dropped); None where
    the read fails or gives a value the reference conversion would not (the caller converts one by one)."""
    if not bodies:
        return columns.empty_table()
    joined = b"\n".join(bodies)
    if joined.count(b"\n") != len(bodies) - 1 or b"\r" in joined:
        # Pretty-printed values: a raw newline is whitespace outside strings and illegal inside them.
        joined = b"\n".join(b.replace(b"\r", b" ").replace(b"\n", b" ") for b in bodies)
    as_read = pa.schema([pa.field(f.name, _read_type(f.type)) for f in columns])
    try:
        rows = pa_json.read_json(
            io.BytesIO(joined), read_options=pa_json.ReadOptions(block_size=max(_MIN_BLOCK_BYTES, len(joined) + 1)),
            parse_options=pa_json.ParseOptions(explicit_schema=as_read, unexpected_field_behavior="ignore"))
        if rows.num_rows != len(bodies):
            return None
        rows = rows.cast(columns)
    except _READ_ERRORS:
        return None
    return rows if _within_years(rows) and not _holds_huge_floats(rows) else None


def _read_type(data_type: pa.DataType) -> pa.DataType:
    """The type pyarrow.json reads a column as: dates and timestamps as their text (it reads dates only
    from numbers), cast after."""
    if pa.types.is_timestamp(data_type) or pa.types.is_date(data_type):
        return pa.string()
    if pa.types.is_struct(data_type):
        return pa.struct([f.with_type(_read_type(f.type)) for f in (data_type.field(i)
                                                                     for i in range(data_type.num_fields))])
    if pa.types.is_list(data_type):
        return pa.list_(_read_type(data_type.value_type))
    if pa.types.is_map(data_type):
        return pa.map_(data_type.key_type, _read_type(data_type.item_type))
    return parser_type(data_type)


def _within_years(rows: pa.Table) -> bool:
    for column in rows.columns:
        for chunk in column.chunks:
            for leaf in _temporal_leaves(chunk):
                if leaf.null_count == len(leaf):
                    continue
                is_date = pa.types.is_date(leaf.type)
                as_numbers = leaf.cast(pa.int32() if is_date else pa.int64())
                low, high = (bound.as_py() for bound in pc.min_max(as_numbers).values())
                bounds = (_MIN_DAYS, _MAX_DAYS) if is_date else (_MIN_MICROS, _MAX_MICROS)
                if low < bounds[0] or high > bounds[1]:
                    return False
    return True


def _holds_huge_floats(rows: pa.Table) -> bool:
    """Whether a double is at least 2^63 in size: an integer literal past 64 bits reads so (and is refused
    by the conversion), as may a plain float literal."""
    leaves = [leaf for column in rows.columns for chunk in column.chunks
              for leaf in _leaves(chunk, pa.types.is_floating)]
    return any((pc.max(pc.abs(leaf)).as_py() or 0) >= 2.0 ** 63 for leaf in leaves)


def _temporal_leaves(array: pa.Array) -> list[pa.Array]:
    return _leaves(array, lambda t: pa.types.is_timestamp(t) or pa.types.is_date(t))


def _leaves(array: pa.Array, wanted: Callable[[pa.DataType], bool]) -> list[pa.Array]:
    if wanted(array.type):
        return [array]
    if pa.types.is_struct(array.type):
        return [leaf for child in array.flatten() for leaf in _leaves(child, wanted)]  # a null struct's too
    if pa.types.is_list(array.type):
        return _leaves(array.flatten(), wanted)
    if pa.types.is_map(array.type):
        return _leaves(array.items, wanted)
    return []


# --- the reference: one value at a time ----------------------------------------------------------


class _Misfit(ValueError):
    pass


Convert = Callable[[Any], Any]


def reference_rows(documents: Sequence[dict[str, Any]], columns: pa.Schema) -> tuple[pa.Table, dict[int, str]]:
    """Valid JSON objects (parsed) converted one by one into `columns`: the rows of those that fit, and why
    each other one (by position) does not. The reference the batch read is tested against."""
    convert = _converter(pa.struct(list(columns)), "")
    rows: list[Any] = []
    kept: list[int] = []
    refused: dict[int, str] = {}
    for position, document in enumerate(documents):
        try:
            rows.append(convert(document))
            kept.append(position)
        except _Misfit as exc:
            refused[position] = f"type mismatch: {exc}"
    try:
        return pa.Table.from_pylist(rows, schema=columns), refused
    except _READ_ERRORS:  # what Arrow itself refuses (a lone surrogate in a string): found one row at a time
        fitting = []
        for position, row in zip(kept, rows, strict=True):
            try:
                pa.Table.from_pylist([row], schema=columns)
            except _READ_ERRORS as exc:
                refused[position] = f"type mismatch: {type(exc).__name__}: {str(exc)[:200]}"
                continue
            fitting.append(row)
        return pa.Table.from_pylist(fitting, schema=columns), refused


def _converter(data_type: pa.DataType, path: str) -> Convert:
    if pa.types.is_struct(data_type):
        children = [(f.name, _converter(f.type, f"{path}.{f.name}" if path else f.name))
                    for f in (data_type.field(i) for i in range(data_type.num_fields))]

        def struct(value: Any) -> Any:
            if value is None:
                return None
            if type(value) is not dict:
                raise _misfit(path, value, "struct")
            return {name: convert(value.get(name)) for name, convert in children}
        return struct
    if pa.types.is_map(data_type):
        item = _converter(data_type.item_type, f"{path}{{}}")

        def map_(value: Any) -> Any:
            if value is None:
                return None
            if type(value) is not dict:
                raise _misfit(path, value, "map")
            return [(key, item(each)) for key, each in value.items()]
        return map_
    if pa.types.is_list(data_type):
        element = _converter(data_type.value_type, f"{path}[]")

        def list_(value: Any) -> Any:
            if value is None:
                return None
            if type(value) is not list:
                raise _misfit(path, value, "list")
            return [element(each) for each in value]
        return list_
    if pa.types.is_timestamp(data_type):
        return _nullable(lambda value: timestamp_of(value, path))
    if pa.types.is_date(data_type):
        return _nullable(lambda value: date_of(value, path))
    if pa.types.is_int64(data_type):
        return _nullable(lambda value: _integer(value, path))
    if pa.types.is_float64(data_type):
        return _nullable(lambda value: _number(value, path))
    kind = {pa.string(): str, pa.bool_(): bool}.get(data_type)
    if kind is None:
        raise SchemaError(path, f"no JSON conversion to {data_type}")
    return _nullable(lambda value: value if type(value) is kind else _raise(_misfit(path, value, str(data_type))))


def _nullable(convert: Convert) -> Convert:
    return lambda value: None if value is None else convert(value)


def _raise(exc: Exception) -> Any:
    raise exc


def _integer(value: Any, path: str) -> int:
    if type(value) is not int:
        raise _misfit(path, value, "long")  # 1.0 is an `integer` to JSON Schema: write integers without a fraction
    return _within_64_bits(value, path)


def _within_64_bits(value: int, path: str) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        shown = str(value)
        shown = shown if len(shown) <= 40 else f"{shown[:40]}… ({len(shown)} digits)"
        raise _Misfit(f"{path}: integer {shown} is outside the 64-bit range")
    return value


def _number(value: Any, path: str) -> float:
    if type(value) is int:
        _within_64_bits(value, path)  # as schemaless JSON: a double would alter it
    elif type(value) is not float:
        raise _misfit(path, value, "double")
    number = float(value)
    if not math.isfinite(number):
        raise _Misfit(f"{path}: the number is outside the range of a double")
    return number


# RFC 3339 date-time, as the validator's `date-time` format takes it; fractions past microseconds are truncated.
_DATE_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d+))?(?:[Zz]|([+-])(\d\d):(\d\d))")


def timestamp_of(value: Any, path: str) -> dt.datetime:
    """An RFC 3339 date-time as a UTC datetime; _Misfit for a leap second (no timestamp holds it) or a
    time outside years 1-9999 in UTC."""
    if type(value) is not str:
        raise _misfit(path, value, "timestamptz")
    match = _DATE_TIME.fullmatch(value)
    if match is None:
        raise _Misfit(f"{path}: {value!r:.60} is not an RFC 3339 date-time")
    year, month, day, hour, minute, second = (int(match[i]) for i in range(1, 7))
    if second == 60:
        raise _Misfit(f"{path}: {value!r:.60} is a leap second, which no timestamp column holds")
    micros = int((match[7] or "")[:6].ljust(6, "0"))
    try:
        local = dt.datetime(year, month, day, hour, minute, second, micros)
        offset = dt.timedelta(hours=int(match[9] or 0), minutes=int(match[10] or 0))
        utc = local - offset if match[8] == "+" else local + offset
    except (ValueError, OverflowError) as exc:
        raise _Misfit(f"{path}: {value!r:.60} has no timestamp in years 1-9999 ({exc})") from None
    return utc.replace(tzinfo=dt.UTC)


def date_of(value: Any, path: str) -> dt.date:
    if type(value) is not str:
        raise _misfit(path, value, "date")
    with contextlib.suppress(ValueError):
        if len(value) == 10 and value[4] == "-" and value[7] == "-":
            return dt.date.fromisoformat(value)
    raise _Misfit(f"{path}: {value!r:.60} is not a date in years 1-9999 (YYYY-MM-DD)")


def _misfit(path: str, value: Any, kind: str) -> _Misfit:
    return _Misfit(f"{path or '(value)'}: {type(value).__name__} {value!r:.40} for a {kind} column")
