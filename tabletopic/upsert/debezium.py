"""A Debezium change event (decoded JSON or Avro) and its Kafka key → the change it makes to the table.

`c` (insert), `r` (snapshot read) and `u` (update) upsert `after`; `d` deletes by the Kafka key, or by
`before` when the key is absent; a tombstone (null value) deletes by the Kafka key, so the one Debezium
sends after each delete is absorbed (deleting twice is harmless).

Truncate (`t`) is a dead letter `truncate_unsupported`, not applied: it would delete every key, which no
equality delete on the key columns expresses, and emptying a table silently on a replayed record is worse
than asking an operator (Debezium skips truncates unless `skipped.operations` lets them through).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tabletopic.core.reasons import Reason

UPSERT_OPS = frozenset({"c", "r", "u"})
Op = Literal["c", "r", "u", "d"]


@dataclass(frozen=True)
class Change:
    op: Op  # a tombstone is `d`
    key: dict[str, Any] | None  # the Kafka key's fields; for a delete, never None (from `before` if need be)
    row: dict[str, Any] | None  # `after` (with the extra columns asked for) for c/r/u; None for a delete

    @property
    def is_delete(self) -> bool:
        return self.op == "d"


@dataclass(frozen=True)
class BadEnvelope:
    reason: Reason
    detail: str


@dataclass(frozen=True)
class ExtraColumns:
    """Names of optional columns added to each upserted row; None leaves the column out."""

    op: str | None = None
    source_ts_ms: str | None = None  # `source.ts_ms`: when the change happened in the source database
    lsn: str | None = None  # `source.lsn` (PostgreSQL); null for sources without one


def unwrap(value: Any) -> Any:
    """Kafka Connect's JsonConverter with schemas on wraps every value as {"schema": ..., "payload": ...}."""
    if isinstance(value, Mapping) and set(value) == {"schema", "payload"}:
        schema = value["schema"]
        if schema is None or isinstance(schema, Mapping):
            return value["payload"]
    return value


def parse_change(
    value: Any,
    kafka_key: Any,
    *,
    key_columns: Sequence[str] | None = None,
    extra: ExtraColumns = ExtraColumns(),
) -> Change | BadEnvelope:
    """`key_columns`, when given, are what a delete must name: the key is cut to them and each must be present."""
    key = unwrap(kafka_key)
    if key is not None and not isinstance(key, Mapping):
        return BadEnvelope(Reason.BAD_ENVELOPE, f"the Kafka key is not an object but {type(key).__name__}")
    event = unwrap(value)
    if event is None:
        return _delete("d", key, None, key_columns, "a tombstone")
    if not isinstance(event, Mapping):
        return BadEnvelope(Reason.BAD_ENVELOPE, f"the value is not a Debezium envelope but {type(event).__name__}")
    op = event.get("op")
    if op == "t":
        return BadEnvelope(Reason.TRUNCATE_UNSUPPORTED,
                           "a truncate of the source table is not applied to the table: truncate it by hand")
    if op == "d":
        return _delete("d", key, event.get("before"), key_columns, "a delete")
    if op not in UPSERT_OPS:
        return BadEnvelope(Reason.BAD_ENVELOPE, f"unknown Debezium op {op!r}")
    after = event.get("after")
    if not isinstance(after, Mapping):
        return BadEnvelope(Reason.BAD_ENVELOPE, f"op {op!r} without an `after` object")
    row = dict(after)
    source = event.get("source")
    source = source if isinstance(source, Mapping) else {}
    for column, extra_value in ((extra.op, op), (extra.source_ts_ms, source.get("ts_ms")),
                                (extra.lsn, source.get("lsn"))):
        if column is None:
            continue
        if column in row:
            return BadEnvelope(Reason.BAD_ENVELOPE, f"`after` already has a column {column!r}, named for metadata")
        row[column] = extra_value
    return Change(op, dict(key) if key is not None else None, row)


def _delete(op: Op, key: Mapping[str, Any] | None, before: Any, key_columns: Sequence[str] | None,
            what: str) -> Change | BadEnvelope:
    sources = [s for s in (key, before) if isinstance(s, Mapping) and s]
    if not sources:
        where = "no Kafka key" if what == "a tombstone" else "no Kafka key and no `before`"
        return BadEnvelope(Reason.MISSING_KEY, f"{what} with {where}: nothing says which key to delete")
    if key_columns is None:
        return Change(op, dict(sources[0]), None)
    for source in sources:
        if all(source.get(c) is not None for c in key_columns):
            return Change(op, {c: source[c] for c in key_columns}, None)
    return BadEnvelope(Reason.MISSING_KEY, f"{what} without a value for every key column ({', '.join(key_columns)})")
