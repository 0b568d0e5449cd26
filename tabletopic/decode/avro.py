"""Avro in the Confluent wire format (magic byte 0, 4-byte big-endian schema id, Avro body) → Arrow.

Writer schemas come from the registry by id and are parsed once. A batch is read in native
code a schema id at a time (avro_batch.py); a batch with anything that path does not take is
decoded a record at a time with fastavro and assembled into Arrow. A value that cannot be decoded is named with its
reason code: not the wire format, an unknown schema id, a schema the table cannot take, an
undecodable body, a value that does not fit its column.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import fastavro
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from tabletopic.catalog.evolution import EvolutionPlan, plan_evolution
from tabletopic.core.conform import conform_table
from tabletopic.core.limits import DEFAULT_MAX_ITEMS
from tabletopic.core.reasons import Reason
from tabletopic.core.records import RecordChunk
from tabletopic.decode import avro_batch, avro_limits
from tabletopic.decode.base import BadValue, Decoded, raise_if_drift, rows_of
from tabletopic.decode.names import NameCollision, Rename, avro_renamer, lowercase_schema
from tabletopic.decode.renames import RenameCollision, Renames, rename_record, rename_table, renamed_schema
from tabletopic.decode.wire import HEADER, schema_id_of
from tabletopic.exceptions import SchemaError, SourceUnavailable
from tabletopic.kafka.registry import SchemaTexts, UnknownSchemaId


class UnreadableSchema(Exception):
    """The registry's schema under this id is not one fastavro can read (references to other
    subjects, another schema type, invalid Avro): its records are dead letters."""

    def __init__(self, schema_id: int, error: Exception) -> None:
        hint = " (schema references are not supported)" if isinstance(error, fastavro.schema.UnknownType) else ""
        super().__init__(f"the writer schema cannot be read: {type(error).__name__}: {error}{hint}")
        self.schema_id = schema_id


class WriterSchemas:
    """Parsed writer schemas by id, and whether their records hold values fastavro gives as objects
    that have no column type of their own (times of day, UUIDs)."""

    def __init__(self, registry: SchemaTexts) -> None:
        self._registry = registry
        self._parsed: dict[int, Any] = {}
        self._unreadable: dict[int, UnreadableSchema] = {}
        self._needs_fixing: dict[int, bool] = {}
        self._batch_json: dict[int, str | None] = {}  # the schema for the batch path, None: not batchable
        self._item_walkers: dict[int, avro_limits.ItemWalk | None] = {}

    @property
    def registry(self) -> SchemaTexts:
        return self._registry

    def parsed(self, schema_id: int) -> Any:
        """The parsed writer schema; raises UnknownSchemaId, UnreadableSchema or RegistryUnavailable."""
        schema = self._parsed.get(schema_id)
        if schema is None:
            if schema_id in self._unreadable:
                raise self._unreadable[schema_id]
            text = self._registry.schema_text(schema_id)
            try:
                schema = fastavro.parse_schema(json.loads(text))
            except Exception as exc:  # any schema fastavro refuses, however it says so
                self._unreadable[schema_id] = UnreadableSchema(schema_id, exc)
                raise self._unreadable[schema_id] from None
            self._parsed[schema_id] = schema
            compact = text.replace(" ", "")
            self._needs_fixing[schema_id] = '"time-m' in compact or '"uuid"' in compact
            self._batch_json[schema_id] = avro_batch.schema_json(text) if avro_batch.batchable(schema) else None
            self._item_walkers[schema_id] = avro_limits.item_walker(schema)
        return schema

    def item_walker(self, schema_id: int) -> avro_limits.ItemWalk | None:
        """The walk that counts a body's array items and map entries; None if its schema has none."""
        return self._item_walkers.get(schema_id)

    def batch_json(self, schema_id: int) -> str | None:
        return self._batch_json.get(schema_id)

    def needs_fixing(self, schema_id: int) -> bool:
        return self._needs_fixing.get(schema_id, False)


class AvroDecoder:
    """Decodes each record with the writer schema of its own id; a batch may mix schema versions.

    Each id's schema is checked against the table once: one the table can take with a change
    raises SchemaDrift before any row is made; one it cannot take makes its records dead letters.
    """

    def __init__(self, schemas: WriterSchemas, arrow_schema: pa.Schema, lowercase: bool = False,
                 max_items: int = DEFAULT_MAX_ITEMS, renames: Renames | None = None) -> None:
        """`renames`: the table's `rename_columns` (decode/renames.py column_renames), applied after `lowercase`."""
        self._schemas = schemas
        self._max_items = max_items
        self.schema = arrow_schema
        self._lowercase = lowercase
        self._renames = dict(renames or {})
        self._plans: dict[int, EvolutionPlan] = {}
        self._renamers: dict[int, Rename | None] = {}
        self._collisions: dict[int, str] = {}  # schema ids holding a renamed field and its target

    def _plan(self, schema_id: int) -> EvolutionPlan:
        plan = self._plans.get(schema_id)
        if plan is None:
            try:
                writer = self._schemas.parsed(schema_id)
                incoming = writer_arrow_schema(writer, self._lowercase, self._renames)
                self._renamers[schema_id] = avro_renamer(writer) if self._lowercase else None
                plan = plan_evolution(self.schema, incoming)
            except (UnknownSchemaId, SourceUnavailable):
                raise
            except RenameCollision as exc:  # every record of this schema holds both fields
                self._collisions[schema_id] = str(exc)
                plan = EvolutionPlan(self.schema, incompatible=[str(exc)])
            except (UnreadableSchema, SchemaError, NameCollision) as exc:
                plan = EvolutionPlan(self.schema, incompatible=[str(exc)])
            except Exception as exc:  # a schema nobody foresaw: its records are dead letters, never a crash loop
                plan = EvolutionPlan(self.schema, incompatible=[f"planning failed: {type(exc).__name__}: {exc}"])
            self._plans[schema_id] = plan
        return plan

    def decode(self, chunk: RecordChunk, allow_drift: bool = True) -> Decoded:
        framed = avro_batch.frames(chunk.values)
        if allow_drift:
            self._raise_if_drift(chunk.values, framed)
        rows = self._decode_batch(chunk.values, framed)
        if rows is not None:
            return Decoded(rows)
        return self._decode_each(chunk.values)

    def _decode_batch(self, values: Sequence[bytes | None], framed: avro_batch.Framed | None = None) -> pa.Table | None:
        """The fast path: each schema id's bodies read at once (avro_batch.py); None if any value or
        schema needs the per-record path."""
        framed = framed or avro_batch.frames(values)
        if framed is None:
            return None
        ids = np.unique(framed.schema_ids)
        parts = []
        for schema_id in ids.tolist():
            rows = None if ids.size == 1 else np.flatnonzero(framed.schema_ids == schema_id)
            try:
                plan = self._plan(schema_id)
            except UnknownSchemaId:
                return None
            text = self._schemas.batch_json(schema_id)
            if plan.incompatible or plan.needs_change or text is None or self._renamers.get(schema_id) is not None:
                return None
            if self._too_many_items(schema_id, values, framed, rows):
                return None
            block, sizes = framed.bodies(rows)
            try:
                read = avro_batch.read_block(text, self._schemas.parsed(schema_id), block, sizes)
                parts.append(conform_table(rename_table(read, self._renames), self.schema))
            except Exception:  # the per-record path finds and names the records at fault
                return None
        # The take copies the rows into Arrow's memory pool (and, with several schema versions, back
        # to the records' order): buffered in the native reader's own allocator, they held ~170 MiB
        # more at the peak of a 256 MiB buffer cap (bench/RESULTS.md).
        if len(parts) == 1:
            return parts[0].take(np.arange(framed.lengths.size))
        order = np.concatenate([np.flatnonzero(framed.schema_ids == i) for i in ids.tolist()])
        return pa.concat_tables(parts).take(np.argsort(order, kind="stable"))

    def _too_many_items(self, schema_id: int, values: Sequence[bytes | None], framed: avro_batch.Framed,
                        rows: npt.NDArray[np.int64] | None) -> bool:
        """Whether a body of `rows` (all when None) holds more array items and map entries than allowed.
        Only bodies long enough to hold that many are walked."""
        walker = self._schemas.item_walker(schema_id)
        if walker is None:
            return False
        indexes = np.arange(framed.lengths.size) if rows is None else rows
        long_ones = indexes[framed.lengths[indexes] - HEADER.size > self._max_items * walker.floor]
        return any(avro_limits.items_refusal(walker, values[i], HEADER.size, self._max_items)
                   for i in long_ones.tolist())

    def _decode_each(self, values: Sequence[bytes | None]) -> Decoded:
        records: list[dict[str, Any]] = []
        good: list[int] = []
        bad: list[BadValue] = []
        for index, value in enumerate(values):
            try:
                records.append(self._decode_one(index, value))
                good.append(index)
            except BadValue as exc:
                bad.append(exc)
        rows, good, bad = rows_of(records, good, bad, self.schema)
        return Decoded(rows, good if bad else None, sorted(bad, key=lambda b: b.index))

    def _raise_if_drift(self, values: Sequence[bytes | None], framed: avro_batch.Framed | None = None) -> None:
        if framed is not None:
            ids = set(np.unique(framed.schema_ids).tolist())
        else:
            ids = set()
            for value in values:
                with contextlib.suppress(ValueError):
                    if value is not None:
                        ids.add(schema_id_of(value))
        raise_if_drift(self.schema, self._known_plans(sorted(ids)))

    def _known_plans(self, schema_ids: Iterable[int]) -> Iterator[EvolutionPlan]:
        """The plans of the ids the registry knows (an unknown id's records are dead letters, not drift)."""
        for schema_id in schema_ids:
            with contextlib.suppress(UnknownSchemaId):
                yield self._plan(schema_id)

    def _decode_one(self, index: int, value: bytes | None) -> dict[str, Any]:
        if value is None:
            return {}
        try:
            schema_id = schema_id_of(value)
        except ValueError as exc:
            raise BadValue(index, str(exc), Reason.NOT_WIRE_FORMAT) from None
        try:
            plan = self._plan(schema_id)
        except UnknownSchemaId:
            raise BadValue(index, f"unknown schema id {schema_id}", Reason.UNKNOWN_SCHEMA_ID, schema_id) from None
        if schema_id in self._collisions:
            raise BadValue(index, f"schema id {schema_id}: {self._collisions[schema_id]}", Reason.RENAME_COLLISION,
                           schema_id)
        if plan.incompatible:
            raise BadValue(index, f"schema id {schema_id}: " + "; ".join(plan.incompatible),
                           Reason.INCOMPATIBLE_SCHEMA, schema_id)
        if plan.needs_change:
            raise BadValue(index, f"schema id {schema_id} needs a table change that did not land: {plan.changes}",
                           Reason.INCOMPATIBLE_SCHEMA, schema_id)
        writer = self._schemas.parsed(schema_id)
        refusal = avro_limits.items_refusal(self._schemas.item_walker(schema_id), value, HEADER.size,
                                            self._max_items)
        if refusal is not None:
            reason, detail = refusal
            raise BadValue(index, f"schema id {schema_id}: {detail}", reason, schema_id)
        body = io.BytesIO(value)
        body.seek(HEADER.size)
        try:
            record = fastavro.schemaless_reader(body, writer, None)
        except Exception as exc:
            raise BadValue(index, f"undecodable Avro (schema id {schema_id}): {exc!r}", Reason.UNDECODABLE_AVRO,
                           schema_id) from None
        if body.tell() != len(value):
            # Bytes its schema does not account for: most likely a record of another schema under this id.
            raise BadValue(index, f"undecodable Avro (schema id {schema_id}): {len(value) - body.tell()} bytes "
                           "after the record", Reason.UNDECODABLE_AVRO, schema_id)
        if not isinstance(record, dict):
            raise BadValue(index, f"schema id {schema_id} is not an Avro record", Reason.INCOMPATIBLE_SCHEMA,
                           schema_id)
        if self._schemas.needs_fixing(schema_id):
            record = _as_column_values(record)
        rename = self._renamers.get(schema_id)
        record = rename(record) if rename is not None else record
        if not self._renames:
            return record
        try:
            return rename_record(record, self._renames)
        except RenameCollision as exc:
            raise BadValue(index, str(exc), Reason.RENAME_COLLISION, schema_id) from None




def _as_column_values(value: Any) -> Any:
    """Times of day as microseconds since midnight, UUIDs as strings: the types of their columns."""
    if isinstance(value, dt.time):
        return ((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000 + value.microsecond
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {k: _as_column_values(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_column_values(v) for v in value]
    return value


def first_writer_schema(schemas: WriterSchemas, values: Sequence[bytes | None]) -> Any:
    """The parsed writer schema of the first decodable value, for creating a table."""
    for value in values:
        if value is None:
            continue
        try:
            return schemas.parsed(schema_id_of(value))
        except (ValueError, UnknownSchemaId, UnreadableSchema):
            continue
    return None


def writer_arrow_schema(writer: Any, lowercase: bool, renames: Renames | None = None) -> pa.Schema:
    """The Arrow schema of a writer schema, its names folded to lower case if the table asks for it, then its
    top-level fields renamed (RenameCollision: it has a renamed field and its target)."""
    schema = avro_to_arrow(writer)
    if lowercase:
        avro_renamer(writer)  # raises NameCollision for fields that fold together
        schema = lowercase_schema(schema)
    return renamed_schema(schema, renames) if renames else schema


def avro_to_arrow(schema: Any) -> pa.Schema:
    """The Arrow schema of an Avro record schema (parsed by fastavro); SchemaError names a field it cannot map."""
    if not (isinstance(schema, dict) and schema.get("type") == "record"):
        raise SchemaError("(value)", "the writer schema is not an Avro record")
    return pa.schema([_arrow_field(f, f["name"]) for f in schema["fields"]])


def _arrow_field(field: dict[str, Any], path: str) -> pa.Field:
    return pa.field(field["name"], _arrow_type(field["type"], path), nullable=True)


_PRIMITIVES = {
    "boolean": pa.bool_(),
    "int": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "bytes": pa.binary(),
    "string": pa.string(),
}


def _arrow_type(avro: Any, path: str) -> pa.DataType:
    if isinstance(avro, str):
        if avro in _PRIMITIVES:
            return _PRIMITIVES[avro]
        raise SchemaError(path, f"Avro type {avro!r} has no Iceberg column type")
    if isinstance(avro, list):
        branches = [b for b in avro if b != "null"]
        if len(branches) != 1:
            names = [b if isinstance(b, str) else b.get("name", b.get("type")) for b in avro]
            raise SchemaError(path, f"Avro union {names} has no Iceberg column type: only [null, T] maps to one")
        return _arrow_type(branches[0], path)
    kind = avro.get("type")
    logical = avro.get("logicalType")
    if logical in ("timestamp-millis", "timestamp-micros"):
        return pa.timestamp("us", tz="UTC")
    if logical in ("local-timestamp-millis", "local-timestamp-micros"):
        return pa.timestamp("us")
    if logical == "date":
        return pa.date32()
    if logical in ("time-millis", "time-micros"):
        # Spark cannot read Iceberg's `time`: keep microseconds since midnight as a long.
        return pa.int64()
    if logical == "decimal":
        return _decimal_type(avro, path)
    if logical == "uuid":
        return pa.string()
    if kind == "record":
        return pa.struct([_arrow_field(f, f"{path}.{f['name']}") for f in avro["fields"]])
    if kind == "array":
        items = _arrow_type(avro["items"], f"{path}[]")
        if avro_limits.may_be_empty(avro["items"]):
            # A few bytes could declare billions of such items.
            raise SchemaError(f"{path}[]", "array items of a type that takes no bytes on the wire are refused")
        return pa.list_(items)
    if kind == "map":
        return pa.map_(pa.string(), _arrow_type(avro["values"], f"{path}{{}}"))
    if kind == "enum":
        return pa.string()
    if kind == "fixed":
        return pa.binary()
    return _arrow_type(kind, path)


# Iceberg's decimals (and Arrow's decimal128) hold up to 38 digits; Avro's have no such bound.
_MAX_DECIMAL_PRECISION = 38


def _decimal_type(avro: dict[str, Any], path: str) -> pa.DataType:
    precision, scale = avro.get("precision"), avro.get("scale", 0)
    if not (isinstance(precision, int) and isinstance(scale, int)
            and 1 <= precision <= _MAX_DECIMAL_PRECISION and 0 <= scale <= precision):
        raise SchemaError(path, f"Avro decimal(precision={precision}, scale={scale}) has no Iceberg column type: "
                          f"precision 1-{_MAX_DECIMAL_PRECISION}, scale 0-precision")
    return pa.decimal128(precision, scale)
