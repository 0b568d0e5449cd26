"""`tabletopic audit` on an upsert table: the table equals its topic's latest value per key, up to the
table's committed offsets (../shared/DESIGN.md, "Upsert tables").

From the topic, read again and decoded here (never by the writer's intake or tabletopic/upsert): per
key, the last record below the committed offset by (partition, offset). A tombstone, a Debezium `d` or
the tombstone after it means the key is absent. Records `<table>__dlq` holds are skipped (a dead
letter leaves its key as it was), and so are records whose key or envelope cannot be read (a truncate
`t`, a bad envelope): the writer dead-letters those, and the offset audit counts any it lost.

From the table, read with its deletes applied: each row's key and the (partition, offset) of the
record that wrote it. A key the topic says is live but the table lacks is missing; one whose row came
from another record is stale; one present that the topic deleted (or never held) is resurrected; one
with several rows is doubled. A row below its partition's log start whose key the log no longer mentions
(a rebuild seeded from the table, or retention since) is counted apart: the log cannot check it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog
from pyiceberg.table import Table

from tabletopic.catalog import reader
from tabletopic.catalog.tables import load_if_exists
from tabletopic.commit.committer import table_offsets
from tabletopic.core import metadata
from tabletopic.core.reasons import Reason
from tabletopic.core.records import RecordChunk
from tabletopic.core.upsert_mode import UpsertMode, upsert_mode
from tabletopic.deadletter.rows import dlq_identifier
from tabletopic.decode.base import BadValue
from tabletopic.decode.keys import DecodedKeys, KeyDecoder, ParsedKey, rows_from_fields
from tabletopic.decode.wire import HEADER, MAGIC
from tabletopic.exceptions import AuditError
from tabletopic.kafka.reader import log_bounds
from tabletopic.kafka.record_reader import read_partition
from tabletopic.kafka.registry import SchemaRegistry
from tabletopic.upsert.debezium import BadEnvelope, Change, parse_change

if TYPE_CHECKING:
    from tabletopic.observe.progress import OnProgress

DELETED = "__deleted"  # expected state: the key's last record deletes it
SAMPLE = 5  # example keys a report shows per count
REDUCE_AT = 2_000_000  # change rows held before they are cut down to the last per key

_ORDER = "__order"
_TABLE_PARTITION = "__table_partition"
_TABLE_OFFSET = "__table_offset"
_WINNER = "__winner"
_BELOW = "__below_log_start"


@dataclass
class ExpectedState:
    rows: pa.Table  # one row per key: the key columns, _kafka_partition, _kafka_offset of its last record, __deleted
    records: int = 0  # records read
    dead_letters: int = 0  # skipped: in `<table>__dlq`
    unreadable: int = 0  # skipped: no key, or a value or envelope that says nothing applicable


@dataclass
class KeyReport:
    missing: int
    stale: int
    resurrected: int
    doubled: int
    samples: dict[str, list[str]] = field(default_factory=dict)
    live_keys: int = 0  # keys the topic says hold a value
    deleted_keys: int = 0
    rows: int = 0  # rows in the table
    records: int = 0
    dead_letters: int = 0
    unreadable: int = 0
    committed: dict[int, int] = field(default_factory=dict)
    below_log_start: int = 0  # keys held only by rows below the log start that the log no longer mentions

    @property
    def ok(self) -> bool:
        return not (self.missing or self.stale or self.resurrected or self.doubled)


# --- the topic's side (pure over records) -------------------------------------------------------------


class ChangeReader:
    """The changes records make to a table's keys, decoded for the audit on their own."""

    def __init__(self, mode: UpsertMode, key_schema: pa.Schema, registry: SchemaRegistry | None = None) -> None:
        if mode.key_format == "avro" and registry is None:
            raise AuditError("the table's keys are Avro: the audit needs the schema registry (--schema-registry)")
        self.mode = mode
        self.key_schema = key_schema
        self.key_names = key_schema.names
        self.keys = KeyDecoder(mode.key_format, registry if mode.key_format == "avro" else None, key_schema)
        self._json = KeyDecoder("json")
        self._avro = KeyDecoder("avro", registry) if registry is not None else None

    def changes(self, chunk: RecordChunk, skip: Collection[int] = ()) -> tuple[pa.Table, int]:
        """(key columns + _kafka_partition + _kafka_offset + __deleted, one row per applicable record of
        `chunk` whose offset is not in `skip`; how many records said nothing applicable)."""
        picked = [i for i, offset in enumerate(chunk.offsets) if offset not in skip] if skip else \
            list(range(len(chunk)))
        if len(picked) != len(chunk):
            chunk = chunk.select(picked)
        if self.mode.envelope == "debezium":
            keys, deleted = self._debezium(chunk)
        elif self.mode.key_source == "value":
            keys, deleted = self._from_values(chunk)
        else:
            keys, deleted = self._from_kafka_keys(chunk)
        good = np.ones(len(chunk), dtype=bool)
        good[[b.index for b in keys.bad]] = False
        table = keys.table.append_column(metadata.PARTITION, pa.array([chunk.partition] * len(chunk), pa.int32()))
        table = table.append_column(metadata.OFFSET, pa.array(chunk.offsets, pa.int64()))
        table = table.append_column(DELETED, pa.array(deleted, pa.bool_()))
        return table.filter(pa.array(good)), int((~good).sum())

    def _from_kafka_keys(self, chunk: RecordChunk) -> tuple[DecodedKeys, list[bool]]:
        return self.keys.decode(chunk.keys), [value is None for value in chunk.values]

    def _from_values(self, chunk: RecordChunk) -> tuple[DecodedKeys, list[bool]]:
        """Key columns of the value; a tombstone has none, so it deletes by the Kafka key's fields."""
        parsed: list[ParsedKey | BadValue] = []
        for key, value in zip(chunk.keys, chunk.values, strict=True):
            if value is None:
                parsed.append(self.keys.parse(key))
                continue
            record = self._record(value)
            parsed.append(record if isinstance(record, BadValue) else
                          ParsedKey({name: record.get(name) for name in self.key_names}))
        return rows_from_fields(parsed, self.key_schema), [value is None for value in chunk.values]

    def _debezium(self, chunk: RecordChunk) -> tuple[DecodedKeys, list[bool]]:
        parsed: list[ParsedKey | BadValue] = []
        deleted: list[bool] = []
        for key, value in zip(chunk.keys, chunk.values, strict=True):
            envelope = None if value is None else self._record(value)
            kafka_key = None if key is None else self._key_record(key)
            if isinstance(kafka_key, BadValue):
                kafka_key = None  # a delete may still name its key in `before`
            change = envelope if isinstance(envelope, BadValue) else \
                parse_change(envelope, kafka_key, key_columns=self.key_names)
            deleted.append(isinstance(change, Change) and change.is_delete)
            if isinstance(change, BadValue):
                parsed.append(change)
            elif isinstance(change, BadEnvelope):
                parsed.append(BadValue(0, change.detail, change.reason))
            else:
                source = change.row if not change.is_delete and self.mode.key_source == "value" else change.key
                parsed.append(BadValue(0, "no key", Reason.MISSING_KEY) if source is None else
                              ParsedKey({name: source.get(name) for name in self.key_names}))
        return rows_from_fields(parsed, self.key_schema), deleted

    def _key_record(self, key: bytes) -> dict[str, Any] | BadValue:
        if self.mode.key_format in ("json", "avro"):
            return self.keys.record(key)
        parsed = self.keys.parse(key)
        return parsed if isinstance(parsed, BadValue) else dict(parsed.fields)

    def _record(self, value: bytes) -> dict[str, Any] | BadValue:
        """A JSON or Avro value (no JSON text starts with Avro's magic byte)."""
        if len(value) >= HEADER.size and value[0] == MAGIC:
            if self._avro is None:
                raise AuditError("the topic holds Avro values: the audit needs the schema registry "
                                 "(--schema-registry)")
            return self._avro.record(value)
        return self._json.record(value)


def last_per_key(changes: pa.Table, key_names: list[str]) -> pa.Table:
    """The last change of each key by (partition, offset)."""
    if changes.num_rows == 0:
        return changes
    ordered = changes.sort_by([(metadata.PARTITION, "ascending"), (metadata.OFFSET, "ascending")])
    ordered = ordered.append_column(_ORDER, pa.array(np.arange(ordered.num_rows, dtype=np.int64)))
    last = ordered.group_by(key_names, use_threads=False).aggregate([(_ORDER, "max")])
    return ordered.take(last[f"{_ORDER}_max"]).drop_columns([_ORDER])


def expected_state(
    chunks: Iterable[RecordChunk], mode: UpsertMode, key_schema: pa.Schema,
    dead_letters: Mapping[int, Collection[int]] | None = None, registry: SchemaRegistry | None = None,
) -> ExpectedState:
    """The state the records of `chunks` (any partitions, in offset order within each) leave the table in;
    `dead_letters`: partition -> offsets `<table>__dlq` holds, skipped."""
    reader_ = ChangeReader(mode, key_schema, registry)
    state = ExpectedState(rows=_empty_state(key_schema))
    held: list[pa.Table] = [state.rows]
    count = 0
    for chunk in chunks:
        skip = (dead_letters or {}).get(chunk.partition, ())
        state.records += len(chunk)
        state.dead_letters += sum(1 for offset in chunk.offsets if offset in skip) if skip else 0
        changes, unreadable = reader_.changes(chunk, skip)
        state.unreadable += unreadable
        held.append(changes)
        count += changes.num_rows
        if count >= REDUCE_AT:
            held = [last_per_key(pa.concat_tables(held), key_schema.names)]
            count = held[0].num_rows
    state.rows = last_per_key(pa.concat_tables(held), key_schema.names)
    return state


def _empty_state(key_schema: pa.Schema) -> pa.Table:
    fields = [pa.field(f.name, f.type) for f in key_schema]
    return pa.schema([*fields, pa.field(metadata.PARTITION, pa.int32()), pa.field(metadata.OFFSET, pa.int64()),
                      pa.field(DELETED, pa.bool_())]).empty_table()


# --- the comparison (pure) ----------------------------------------------------------------------------


def compare_keys(expected: pa.Table, actual: pa.Table, log_start: Mapping[int, int] | None = None) -> KeyReport:
    """`expected`: an ExpectedState's rows; `actual`: the table's key columns, _kafka_partition, _kafka_offset;
    `log_start`: partition -> the log's first offset (rows below it are not in `expected`)."""
    names = [n for n in expected.column_names if n not in (metadata.PARTITION, metadata.OFFSET, DELETED)]
    key_types = {n: expected.schema.field(n).type for n in names}
    table = pa.table({
        **{n: actual[n].cast(key_types[n]) for n in names},
        _TABLE_PARTITION: actual[metadata.PARTITION].cast(pa.int64()),
        _TABLE_OFFSET: actual[metadata.OFFSET].cast(pa.int64()),
        _BELOW: _below(actual, log_start or {}),
    })
    topic = pa.table({
        **{n: expected[n] for n in names},
        metadata.PARTITION: expected[metadata.PARTITION].cast(pa.int64()),
        metadata.OFFSET: expected[metadata.OFFSET].cast(pa.int64()),
        DELETED: expected[DELETED],
    })
    joined = topic.join(table, keys=names, join_type="full outer", use_threads=False)
    winner = pc.fill_null(pc.and_(pc.equal(joined[_TABLE_PARTITION], joined[metadata.PARTITION]),
                                  pc.equal(joined[_TABLE_OFFSET], joined[metadata.OFFSET])), False)
    joined = joined.append_column(_WINNER, winner)
    per_key = joined.group_by(names, use_threads=False).aggregate([
        (DELETED, "min"), (metadata.PARTITION, "min"), (metadata.OFFSET, "min"), (_TABLE_OFFSET, "count"),
        (_TABLE_PARTITION, "list"), (_TABLE_OFFSET, "list"), (_WINNER, "max"), (_BELOW, "min"),
    ])
    deleted = per_key[f"{DELETED}_min"]
    rows = per_key[f"{_TABLE_OFFSET}_count"]
    live = pc.fill_null(pc.invert(deleted), False)
    in_table = pc.greater(rows, 0)
    # Every row of the key below the log start, and the log holds nothing of the key: not checkable.
    below = pc.fill_null(pc.and_(pc.and_(in_table, pc.is_null(deleted)), per_key[f"{_BELOW}_min"]), False)
    kinds = {
        "missing": pc.and_(live, pc.invert(in_table)),
        "stale": pc.and_(pc.and_(live, in_table), pc.invert(pc.fill_null(per_key[f"{_WINNER}_max"], False))),
        "resurrected": pc.and_(pc.and_(in_table, pc.fill_null(deleted, True)), pc.invert(below)),
        "doubled": pc.greater(rows, 1),
    }
    counts = {kind: int(pc.sum(mask.cast(pa.int64())).as_py() or 0) for kind, mask in kinds.items()}
    samples = {kind: [_describe(kind, row, names) for row in per_key.filter(mask).slice(0, SAMPLE).to_pylist()]
               for kind, mask in kinds.items() if counts[kind]}
    return KeyReport(
        counts["missing"], counts["stale"], counts["resurrected"], counts["doubled"], samples,
        live_keys=int(pc.sum(pc.invert(expected[DELETED]).cast(pa.int64())).as_py() or 0),
        deleted_keys=int(pc.sum(expected[DELETED].cast(pa.int64())).as_py() or 0), rows=actual.num_rows,
        below_log_start=int(pc.sum(below.cast(pa.int64())).as_py() or 0),
    )


def _below(actual: pa.Table, log_start: Mapping[int, int]) -> pa.Array:
    """Per row of the table, whether its offset lies below its partition's log start."""
    partitions = actual[metadata.PARTITION].to_numpy(zero_copy_only=False)
    offsets = actual[metadata.OFFSET].to_numpy(zero_copy_only=False)
    starts = np.zeros(len(offsets), dtype=np.int64)
    for partition, start in log_start.items():
        starts[partitions == partition] = start
    return pa.array(offsets < starts, pa.bool_())


def _describe(kind: str, row: dict[str, Any], names: list[str]) -> str:
    key = ", ".join(f"{n}={row[n]!r}" for n in names)
    topic = f"{row[f'{metadata.PARTITION}_min']}/{row[f'{metadata.OFFSET}_min']}"
    held = ", ".join(f"{p}/{o}" for p, o in zip(row[f"{_TABLE_PARTITION}_list"] or [],
                                                 row[f"{_TABLE_OFFSET}_list"] or [], strict=True) if o is not None)
    if kind == "missing":
        return f"{key} (topic {topic})"
    if kind == "stale":
        return f"{key} (table {held}, topic {topic})"
    if kind == "resurrected":
        why = "never in the topic" if row[f"{DELETED}_min"] is None else f"deleted at {topic}"
        return f"{key} (table {held}, {why})"
    return f"{key} (table {held})"


# --- I/O -----------------------------------------------------------------------------------------------


def key_schema_of(table: Table) -> pa.Schema:
    """The table's key columns (its identifier fields) as Arrow."""
    schema = table.schema()
    if not schema.identifier_field_ids:
        raise AuditError(f"{table.name()} is an upsert table without identifier fields: it has no key to audit")
    arrow = schema.as_arrow()
    return pa.schema([arrow.field(schema.find_field(i).name) for i in schema.identifier_field_ids])


def audit_keys(
    catalog: Catalog, identifier: str, topic: str, group: str, kafka_settings: Mapping[str, str],
    registry: SchemaRegistry | None = None, on_progress: OnProgress | None = None,
) -> KeyReport:
    """`on_progress`: told ("topic/partition", offsets read, offsets to read) as the topic is read."""
    table = catalog.load_table(identifier)
    mode = upsert_mode(table.properties)
    if mode is None:
        raise AuditError(f"{identifier} is not an upsert table")
    names = {f.name for f in table.schema().fields}
    if not {metadata.PARTITION, metadata.OFFSET} <= names:
        raise AuditError(f"{identifier} has no Kafka metadata columns (_kafka_partition, _kafka_offset) to audit")
    key_schema = key_schema_of(table)
    committed = {p: n for (t, p), n in table_offsets(table, group).items() if t == topic}
    bounds = log_bounds(kafka_settings, topic)
    if not bounds:
        raise AuditError(f"topic {topic!r} not found")
    letters = _dead_letters(catalog, identifier, topic)
    ranges = {partition: (bounds[partition][0], min(end, bounds[partition][1]))
              for partition, end in sorted(committed.items()) if partition in bounds}
    chunks = _read_ranges(kafka_settings, topic, ranges, on_progress)
    state = expected_state(chunks, mode, key_schema, letters, registry)
    actual = reader.read(table, columns=[*key_schema.names, metadata.PARTITION, metadata.OFFSET])
    report = compare_keys(state.rows, actual, {p: low for p, (low, _) in bounds.items()})
    report.records, report.dead_letters, report.unreadable = state.records, state.dead_letters, state.unreadable
    report.committed = committed
    return report


def _read_ranges(kafka_settings: Mapping[str, str], topic: str, ranges: Mapping[int, tuple[int, int]],
                 on_progress: OnProgress | None) -> Iterator[RecordChunk]:
    """The records of `ranges` (partition -> first offset, end), partition after partition."""
    if on_progress is not None:
        for partition, (start, end) in ranges.items():
            on_progress(f"{topic}/{partition}", 0, max(end - start, 0))
    for partition, (start, end) in ranges.items():
        for chunk in read_partition(kafka_settings, topic, partition, start, end):
            if on_progress is not None:
                on_progress(f"{topic}/{partition}", min(chunk.last + 1, end) - start, end - start)
            yield chunk
        if on_progress is not None:  # the range's last offsets may hold no record (a marker, compaction)
            on_progress(f"{topic}/{partition}", max(end - start, 0), max(end - start, 0))


def _dead_letters(catalog: Catalog, identifier: str, topic: str) -> dict[int, set[int]]:
    letters = load_if_exists(catalog, dlq_identifier(identifier))
    if letters is None:
        return {}
    rows = letters.scan(row_filter=f"{metadata.TOPIC} == '{topic}'",
                        selected_fields=(metadata.PARTITION, metadata.OFFSET)).to_arrow()
    by_partition: dict[int, set[int]] = {}
    for partition, offset in zip(rows[metadata.PARTITION].to_pylist(), rows[metadata.OFFSET].to_pylist(),
                                 strict=True):
        by_partition.setdefault(partition, set()).add(offset)
    return by_partition


def format_keys(report: KeyReport) -> list[str]:
    committed = " ".join(f"{p}:{n}" for p, n in sorted(report.committed.items())) or "-"
    lines = [
        f"keys (upsert table): committed offsets {committed}; {report.records} records read, "
        f"{report.dead_letters} dead letters and {report.unreadable} without an applicable key skipped",
        f"{'live keys':>10} {'deleted':>8} {'rows':>10} {'missing':>8} {'stale':>8} {'resurrected':>11} "
        f"{'doubled':>8}  status",
        f"{report.live_keys:>10} {report.deleted_keys:>8} {report.rows:>10} {report.missing:>8} {report.stale:>8} "
        f"{report.resurrected:>11} {report.doubled:>8}  {'ok' if report.ok else 'FAIL'}",
    ]
    if report.below_log_start:
        lines.append(f"  {report.below_log_start} keys held by rows below the log start, not checked against the log")
    lines += [f"  {kind} e.g. {'; '.join(examples)}" for kind, examples in report.samples.items()]
    return lines
