"""Debezium change events (JSON, with or without Kafka Connect's `schema`/`payload` wrapper) → the records of
an upsert table: `c`/`r`/`u` become their `after` row under the same key, `d` becomes a tombstone of its key,
and a bad envelope a dead letter with its reason (tabletopic/upsert/debezium.py decides which is which).

Each `after` is written back as plain JSON, so the JSON decoder, schema evolution and every guard of the
value path apply to it unchanged. A delete's key comes from the Kafka key, or from `before` without one."""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import fastavro
import pyarrow as pa

from tabletopic.core.reasons import Reason
from tabletopic.core.records import RecordChunk
from tabletopic.decode.avro import UnreadableSchema, WriterSchemas
from tabletopic.decode.base import BadValue
from tabletopic.decode.debezium_avro import AFTER_ROW_ID_OFFSET, NotAnEnvelope
from tabletopic.decode.isolate import describe
from tabletopic.decode.json_guard import is_too_deep, too_deep_message
from tabletopic.decode.keys import KeyDecoder
from tabletopic.decode.wire import HEADER, MAGIC, schema_id_of
from tabletopic.kafka.registry import UnknownSchemaId
from tabletopic.upsert.connect_schema import BadLogicalValue, arrow_schema, json_ready, row_fields
from tabletopic.upsert.debezium import BadEnvelope, ExtraColumns, parse_change, unwrap


@dataclass
class Unwrapped:
    chunk: RecordChunk  # `after` as each value, a tombstone for each delete
    bad: list[BadValue]
    # The columns the newest embedded Connect schema of the chunk declares (upsert/connect_schema.py), for
    # the table's creation and evolution; None when no value carried one.
    declared: pa.Schema | None


def debezium_chunk(chunk: RecordChunk, cdc_columns: Mapping[str, str], key_columns: Sequence[str] | None,
                   columns: Mapping[str, pa.DataType]) -> Unwrapped:
    """`key_columns`: the table's, once it exists: a delete's key (from `before`) is cut to them. `columns`:
    the table's column types (none before it exists), which logical-typed values are converted for."""
    extra = ExtraColumns(cdc_columns.get("op"), cdc_columns.get("source_ts_ms"), cdc_columns.get("lsn"))
    if key_columns is None:
        key_columns = _key_columns_seen(chunk.keys)
    keys: list[bytes | None] = list(chunk.keys)
    values: list[bytes | None] = list(chunk.values)
    bad: list[BadValue] = []
    newest_fields: list[Mapping[str, Any]] | None = None
    for index, (key, value) in enumerate(zip(chunk.keys, chunk.values, strict=True)):
        deep = next((data for data in (value, key) if is_too_deep(data)), None)
        if deep is not None:
            bad.append(BadValue(index, too_deep_message(deep), Reason.TOO_DEEP))
            continue
        try:
            event = _loads(value)
            kafka_key = _loads(key)
        except ValueError as exc:
            bad.append(BadValue(index, describe(exc), Reason.MALFORMED_JSON))
            continue
        change = parse_change(event, kafka_key, key_columns=key_columns, extra=extra)
        if isinstance(change, BadEnvelope):
            bad.append(BadValue(index, change.detail, change.reason))
            continue
        if change.is_delete and kafka_key is None and key_columns is None:
            bad.append(BadValue(index, "a delete without a Kafka key before any record named the key columns: "
                                       "its `before` cannot say which of its columns are the key",
                                Reason.MISSING_KEY))
            continue
        if change.is_delete:
            values[index] = None
            if key is None or not isinstance(kafka_key, Mapping):  # the key came from `before`
                keys[index] = _dumps(change.key)
        else:
            fields = row_fields(event.get("schema")) if isinstance(event, Mapping) else None
            row = change.row or {}
            if fields is not None:
                try:
                    row = json_ready(row, fields, columns, keep=change.key or {})
                except BadLogicalValue as exc:
                    bad.append(BadValue(index, str(exc), Reason.BAD_ENVELOPE))
                    continue
                newest_fields = fields
            values[index] = _dumps(row)
    declared = None if newest_fields is None else _with_extra(arrow_schema(newest_fields), extra)
    return Unwrapped(dataclasses.replace(chunk, keys=keys, values=values), bad, declared)


def _with_extra(schema: pa.Schema, extra: ExtraColumns) -> pa.Schema:
    for name, data_type in ((extra.op, pa.string()), (extra.source_ts_ms, pa.int64()), (extra.lsn, pa.int64())):
        if name is not None and name not in schema.names:
            schema = schema.append(pa.field(name, data_type))
    return schema


def _key_columns_seen(keys: Sequence[bytes | None]) -> list[str] | None:
    """Before the table exists, its key columns are the fields of the first Kafka key that is an object:
    a delete without a key then takes them from `before`, not all of `before`'s columns."""
    for key in keys:
        if key is None or is_too_deep(key):
            continue
        try:
            fields = unwrap(json.loads(key))
        except ValueError:
            continue
        if isinstance(fields, Mapping) and fields:
            return [str(name) for name in fields]
    return None


def _loads(data: bytes | None) -> Any:
    return None if data is None else json.loads(data)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def debezium_avro_chunk(chunk: RecordChunk, envelopes: KeyDecoder, rows: WriterSchemas,
                        cdc_columns: Mapping[str, str]) -> Unwrapped:
    """Avro envelopes (wire format, writer schema from the registry) → each `after` framed under its derived
    schema id (decode/debezium_avro.py, `rows`), a delete as a tombstone under the record's own key. A delete
    without a Kafka key is a dead letter: its key would have to be written back in the key's Avro schema.
    `envelopes` reads an envelope whole (wire format, registry, the value path's guards)."""
    extra = ExtraColumns(cdc_columns.get("op"), cdc_columns.get("source_ts_ms"), cdc_columns.get("lsn"))
    values: list[bytes | None] = list(chunk.values)
    bad: list[BadValue] = []
    for index, (key, value) in enumerate(zip(chunk.keys, chunk.values, strict=True)):
        if value is None:
            continue  # a tombstone: the key decides
        event = envelopes.record(value)
        if isinstance(event, BadValue):
            bad.append(event.at(index))
            continue
        schema_id = schema_id_of(value)
        if schema_id >= AFTER_ROW_ID_OFFSET:  # no registry gives such ids (int32); its rows' id could not be framed
            bad.append(BadValue(index, f"schema id {schema_id} is beyond the ids a Debezium table can serve",
                                Reason.UNKNOWN_SCHEMA_ID, schema_id))
            continue
        change = parse_change(event, None if key is None else {}, extra=extra)
        if isinstance(change, BadEnvelope):
            bad.append(BadValue(index, change.detail, change.reason, schema_id))
            continue
        if key is None:
            bad.append(BadValue(index, "a change without a Kafka key: nothing says which key it is",
                                Reason.MISSING_KEY, schema_id))
            continue
        if change.is_delete:
            values[index] = None
            continue
        row_id = schema_id + AFTER_ROW_ID_OFFSET
        try:
            body = io.BytesIO()
            body.write(HEADER.pack(MAGIC, row_id))
            fastavro.schemaless_writer(body, rows.parsed(row_id), change.row)
        except (UnknownSchemaId, UnreadableSchema, NotAnEnvelope, ValueError, TypeError) as exc:
            bad.append(BadValue(index, f"the `after` row does not fit its schema: {describe(exc)}",
                                Reason.BAD_ENVELOPE, schema_id))
            continue
        values[index] = body.getvalue()
    return Unwrapped(dataclasses.replace(chunk, values=values), bad, None)
