"""Protobuf in the Confluent wire format (magic byte 0, 4-byte big-endian schema id, message-index array,
body) → Arrow.

Each record names its schema by id and its message by the index path; a (schema id, message) pair is
planned once: its columns (protobuf_types.py) checked against the table's. One the table can take with a
change raises SchemaDrift before any row is made; one it cannot take makes its records dead letters with
the reason. A batch is read in native code a message at a time (protobuf_batch.py); a batch that path gives
up on is decoded a record at a time with python protobuf (protobuf_record.py), which names each bad record:
not the wire format, an unknown schema id, an unknown message index, a schema the table cannot take, an
undecodable body, a value that does not fit its column.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf import message_factory
from google.protobuf.message import Message

from tabletopic.catalog.evolution import EvolutionPlan, plan_evolution
from tabletopic.core.conform import conform_table
from tabletopic.core.limits import DEFAULT_MAX_ITEMS
from tabletopic.core.reasons import Reason
from tabletopic.core.records import RecordChunk
from tabletopic.decode.base import BadValue, Decoded, raise_if_drift, rows_of
from tabletopic.decode.names import NameCollision
from tabletopic.decode.protobuf_batch import BatchReader
from tabletopic.decode.protobuf_record import OutOfRange, TooManyItems, message_row
from tabletopic.decode.protobuf_schema import ProtobufSchemas, UnknownMessageIndex, UnreadableProtobuf
from tabletopic.decode.protobuf_types import Field, MessageShape, message_shape
from tabletopic.decode.renames import RenameCollision, Renames, rename_record, rename_table, renamed_schema
from tabletopic.decode.wire import HEADER, MAGIC, BadMessageIndexes, NotWireFormat, message_indexes, schema_id_of
from tabletopic.exceptions import SchemaError, SourceUnavailable
from tabletopic.kafka.registry import UnknownSchemaId

Key = tuple[int, tuple[int, ...]]  # (schema id, message-index path)


@dataclass
class MessagePlan:
    evolution: EvolutionPlan
    refusal: tuple[Reason, str] | None = None  # why every record of this message is a dead letter
    message_class: type[Message] | None = None
    fields: tuple[Field, ...] = ()
    reader: BatchReader | None = None  # None: the per-record path only
    lasting: bool = True  # false: a refusal a later registration may lift (asked again, never kept)


class ProtobufDecoder:
    """Decodes each record with the message its schema id and index path name; a batch may mix them."""

    def __init__(self, schemas: ProtobufSchemas, arrow_schema: pa.Schema, lowercase: bool = False,
                 max_items: int = DEFAULT_MAX_ITEMS, renames: Renames | None = None) -> None:
        """`renames`: the table's `rename_columns` (decode/renames.py column_renames), applied after `lowercase`."""
        self._schemas = schemas
        self.schema = arrow_schema
        self._lowercase = lowercase
        self._max_items = max_items
        self._renames = dict(renames or {})
        self._plans: dict[Key, MessagePlan] = {}

    def _plan(self, key: Key) -> MessagePlan:
        plan = self._plans.get(key)
        if plan is None:
            plan = self._make_plan(key)
            if plan.lasting:
                self._plans[key] = plan
        return plan

    def _make_plan(self, key: Key) -> MessagePlan:
        schema_id, indexes = key
        refused = EvolutionPlan(self.schema)
        try:
            message = self._schemas.compiled(schema_id).message(indexes)
            shape = message_shape(message, self._lowercase)
            evolution = plan_evolution(self.schema, renamed_schema(shape.schema, self._renames))
            if evolution.incompatible:
                return MessagePlan(evolution, (Reason.INCOMPATIBLE_SCHEMA,
                                               f"schema id {schema_id}: " + "; ".join(evolution.incompatible)))
            return MessagePlan(evolution, None, message_factory.GetMessageClass(message), shape.fields,
                               _batch_reader(message, shape))
        except (UnknownSchemaId, SourceUnavailable):
            raise
        except UnknownMessageIndex as exc:
            refusal = (Reason.UNKNOWN_MESSAGE_INDEX, f"schema id {schema_id}: {exc}")
        except RenameCollision as exc:  # every record of this message holds both fields
            refusal = (Reason.RENAME_COLLISION, f"schema id {schema_id}: {exc}")
        except UnreadableProtobuf as exc:
            refused.incompatible.append(f"schema id {schema_id}: {exc}")
            return MessagePlan(refused, (Reason.INCOMPATIBLE_SCHEMA, f"schema id {schema_id}: {exc}"),
                               lasting=exc.lasting)
        except (SchemaError, NameCollision) as exc:
            refusal = (Reason.INCOMPATIBLE_SCHEMA, f"schema id {schema_id}: {exc}")
        except Exception as exc:  # a schema nobody foresaw: its records are dead letters, never a crash loop
            refusal = (Reason.INCOMPATIBLE_SCHEMA,
                       f"schema id {schema_id}: planning failed: {type(exc).__name__}: {exc}")
        refused.incompatible.append(refusal[1])
        return MessagePlan(refused, refusal)

    def decode(self, chunk: RecordChunk, allow_drift: bool = True) -> Decoded:
        headers = _headers(chunk.values)
        if allow_drift:
            self._raise_if_drift(headers)
        rows = self._decode_batch(chunk.values, headers)
        if rows is not None:
            return Decoded(rows)
        return self._decode_each(chunk.values)

    def _raise_if_drift(self, headers: Sequence[tuple[Key, int] | None]) -> None:
        keys = {header[0] for header in headers if header is not None}
        raise_if_drift(self.schema, self._known_plans(sorted(keys)))

    def _known_plans(self, keys: Iterable[Key]) -> Iterator[EvolutionPlan]:
        """The plans of the schema ids the registry knows (an unknown id's records are dead letters, not drift)."""
        for key in keys:
            with contextlib.suppress(UnknownSchemaId):
                yield self._plan(key).evolution

    def _decode_batch(self, values: Sequence[bytes | None],
                      headers: Sequence[tuple[Key, int] | None] | None = None) -> pa.Table | None:
        """The fast path: each message's bodies read at once; None if any value or message needs the
        per-record path."""
        positions: dict[Key, list[int]] = {}
        bodies: list[bytes] = []
        for index, (value, header) in enumerate(zip(values, headers or _headers(values), strict=True)):
            if header is None or value is None:
                return None
            positions.setdefault(header[0], []).append(index)
            bodies.append(value[header[1]:])
        parts, order = [], []
        for key, indexes in positions.items():
            try:
                plan = self._plan(key)
            except UnknownSchemaId:
                return None
            if plan.refusal or plan.evolution.incompatible or plan.evolution.needs_change or plan.reader is None:
                return None
            try:
                read = plan.reader.read([bodies[i] for i in indexes], self._max_items)
                parts.append(conform_table(rename_table(read, self._renames), self.schema))
            except Exception:  # the per-record path finds and names the records at fault
                return None
            order.extend(indexes)
        if len(parts) == 1:
            return parts[0]
        return pa.concat_tables(parts).take(pc.sort_indices(pa.array(order)))

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

    def _decode_one(self, index: int, value: bytes | None) -> dict[str, Any]:
        if value is None:
            return {}
        try:
            schema_id = schema_id_of(value)
            key, start = _key_of(value)
        except NotWireFormat as exc:
            raise BadValue(index, str(exc), Reason.NOT_WIRE_FORMAT) from None
        except BadMessageIndexes as exc:
            raise BadValue(index, f"schema id {schema_id}: {exc}", Reason.UNKNOWN_MESSAGE_INDEX, schema_id) from None
        try:
            plan = self._plan(key)
        except UnknownSchemaId:
            raise BadValue(index, f"unknown schema id {schema_id}", Reason.UNKNOWN_SCHEMA_ID, schema_id) from None
        if plan.refusal is not None:
            raise BadValue(index, plan.refusal[1], plan.refusal[0], schema_id)
        if plan.evolution.needs_change:
            raise BadValue(index, f"schema id {schema_id} needs a table change that did not land: "
                           f"{plan.evolution.changes}", Reason.INCOMPATIBLE_SCHEMA, schema_id)
        assert plan.message_class is not None
        try:
            message = plan.message_class.FromString(value[start:])
        except Exception as exc:
            raise BadValue(index, f"undecodable Protobuf (schema id {schema_id}, message {list(key[1])}): {exc}",
                           Reason.UNDECODABLE_PROTOBUF, schema_id) from None
        try:
            record = message_row(message, plan.fields, self._max_items)
        except TooManyItems as exc:
            raise BadValue(index, f"schema id {schema_id}: {exc}", Reason.TOO_MANY_ITEMS, schema_id) from None
        except (OutOfRange, ValueError, TypeError) as exc:
            raise BadValue(index, f"schema id {schema_id}: {exc}", Reason.TYPE_MISMATCH, schema_id) from None
        if not self._renames:
            return record
        try:
            return rename_record(record, self._renames)
        except RenameCollision as exc:
            raise BadValue(index, str(exc), Reason.RENAME_COLLISION, schema_id) from None




def _headers(values: Sequence[bytes | None]) -> list[tuple[Key, int] | None]:
    """Each value's (schema id, message-index path) and where its body starts; None: not a wire-format value."""
    out: list[tuple[Key, int] | None] = []
    common: dict[bytes, tuple[Key, int]] = {}  # header bytes of values of message [0], a single 0 byte
    for value in values:
        if value is not None and len(value) > HEADER.size and value[0] == MAGIC and value[HEADER.size] == 0:
            prefix = value[:HEADER.size + 1]
            header = common.get(prefix)
            if header is None:
                header = common[prefix] = ((int.from_bytes(value[1:HEADER.size], "big"), (0,)), HEADER.size + 1)
            out.append(header)
            continue
        try:
            out.append(None if value is None else _key_of(value))
        except ValueError:
            out.append(None)
    return out


def _key_of(value: bytes) -> tuple[Key, int]:
    """(schema id, message-index path) and where the body starts; ValueError if the header is not one."""
    indexes, start = message_indexes(value)
    return (schema_id_of(value), indexes), start


def _batch_reader(message: Any, shape: MessageShape) -> BatchReader | None:
    if not shape.batchable:
        return None
    try:
        return BatchReader(message, shape)
    except Exception:  # the per-record path reads what ptars cannot
        return None


def first_value_schema(schemas: ProtobufSchemas, values: Sequence[bytes | None], lowercase: bool,
                       renames: Renames | None = None) -> pa.Schema | None:
    """The columns of the first value whose message can be read, for creating a table; None if none can.
    SchemaError (or NameCollision, RenameCollision) if that message has no columns a table can take."""
    for value in values:
        if value is None:
            continue
        try:
            (schema_id, indexes), _ = _key_of(value)
            message = schemas.compiled(schema_id).message(indexes)
        except (ValueError, UnknownSchemaId, UnreadableProtobuf, UnknownMessageIndex):
            continue
        schema = message_shape(message, lowercase).schema
        return renamed_schema(schema, renames) if renames else schema
    return None
