"""`tabletopic rebuild --seed-from-table`: the rows a topic's log lost to retention, re-projected from the live
table into the new version; the log supplies the rest (docs/rebuild.md).

There are no records to decode again below the log start, only the live table's rows: their value columns
are taken by name (the new `rename_columns` applied), their `_kafka_*` columns as they are (each row's
coordinates). A new projection that changes what rows are made from (the format, the mode or the key, the
metadata columns) cannot be derived from rows: refused.

The seeded rows go into `__rebuild` in one commit under the exactly-once protocol, its offsets the log start
of each partition seeded (their dead letters first, into `__rebuild__dlq`, as the writer orders them): a
rebuild killed after that commit resumes from its offsets, one killed before it seeds again from scratch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import structlog
from pyiceberg.catalog import Catalog
from pyiceberg.table import Table

from tabletopic.catalog import reader as table_reader
from tabletopic.catalog.partition_evolution import partition_by_property
from tabletopic.catalog.projection import recorded_projection
from tabletopic.catalog.tables import create_table, key_columns, load_if_exists, table_schema
from tabletopic.commit.buffer import PartitionBuffer
from tabletopic.commit.offsets import OffsetMap, TopicPartition
from tabletopic.config import TableConfig, table_config_from
from tabletopic.core import failpoints, metadata
from tabletopic.core.upsert_mode import UpsertMode, upsert_mode
from tabletopic.deadletter import rows as dead_letter
from tabletopic.decode import raw
from tabletopic.decode.renames import column_renames
from tabletopic.exceptions import ConfigError
from tabletopic.rebuild.cutover import SwapRefused
from tabletopic.sink import TableSink
from tabletopic.upsert.payload import FLAG_FIELD

log = structlog.get_logger(__name__)

FAILPOINT = "rebuild.seeded"  # right after the seed commit


# --- pure ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MadeUnder:
    """What the live table's rows were made under, as far as the table tells (a projection it records from a
    rebuild says all; otherwise its properties, key columns and columns say some)."""

    format: str | None  # None: json or avro, the table does not say which
    upsert: UpsertMode | None
    key: tuple[str, ...]  # value columns keying an upsert table (key_source value)
    rename_columns: Mapping[str, str] = field(default_factory=dict)
    lowercase: bool = False


def refusal(old: MadeUnder, new: TableConfig, schema: pa.Schema) -> str | None:
    """Why rows made under `old` (of `schema`) cannot be re-projected under `new`, if they cannot: the setting
    that changes what rows are made from, named."""
    if not new.metadata_columns:
        return ("metadata_columns: false — the new version would have no _kafka_* columns, which are what tells "
                "the rows below the log start from the log's")
    if old.format is not None and old.format != new.format:
        return f"format: {old.format} → {new.format} — the rows hold the old format's columns, not the records"
    if old.format is None and new.format == "raw":
        return "format: → raw — the rows hold decoded columns, not the records' bytes"
    if (old.upsert is None) != (new.upsert is None):
        return (f"mode: {'upsert' if old.upsert else 'append'} → {'upsert' if new.upsert else 'append'} — the rows "
                f"below the log start are {'the current state per key' if old.upsert else 'every record'}, not "
                f"{'every record' if old.upsert else 'the current state per key'}")
    if old.upsert is not None and new.upsert is not None:
        if old.upsert.key_source != new.upsert.key_source or tuple(new.key) != old.key:
            return f"key: {list(old.key) or 'the Kafka key'} → {new.key or 'the Kafka key'}"
        if old.upsert.key_format != new.upsert.key_format:
            return f"key_format: {old.upsert.key_format} → {new.upsert.key_format}"
        if old.upsert.envelope != new.upsert.envelope:
            return f"envelope: {old.upsert.envelope} → {new.upsert.envelope}"
    if new.column_names == "lowercase" and not old.lowercase:
        upper = next((name for name in _names(schema) if name != name.lower()), None)
        if upper is not None:
            return f"column_names: lowercase — the rows have a column {upper!r} the new version would fold"
    return None


def _names(schema: pa.Schema) -> list[str]:
    """Every field name of `schema`, nested ones too."""
    found: list[str] = []

    def walk(fields: Sequence[pa.Field]) -> None:
        for f in fields:
            found.append(f.name)
            kind = f.type
            if pa.types.is_struct(kind):
                walk([kind.field(i) for i in range(kind.num_fields)])
            elif pa.types.is_list(kind) or pa.types.is_large_list(kind):
                walk([kind.value_field])
            elif pa.types.is_map(kind):
                walk([kind.key_field, kind.item_field])

    walk(list(schema))
    return found


def column_mapping(columns: Sequence[str], old: MadeUnder, new: TableConfig,
                   keys: Sequence[str] = ()) -> dict[str, str]:
    """Old column -> new column. A value column is the field it was made from (the old renames undone), under
    the name the new renames give that field; `_kafka_*` and key columns keep theirs. Raises SwapRefused when
    two old columns would become one, or a rename takes a key column (its value field is not in the rows)."""
    made_from = {target: source for source, target in column_renames(old.rename_columns, old.lowercase).items()}
    renames = column_renames(new.rename_columns, new.column_names == "lowercase")
    fixed = set(metadata.NAMES) | set(keys)
    mapping: dict[str, str] = {}
    for column in columns:
        source = made_from.get(column, column)
        if column in fixed:
            if column in keys and source in renames and renames[source] != column:
                raise SwapRefused(f"rename_columns: {source!r} → {renames[source]!r} renames a key column: the rows "
                                  f"hold the key there, not the value's own field")
            mapping[column] = column
            continue
        mapping[column] = renames.get(source, source)
    taken: dict[str, str] = {}
    for column, target in mapping.items():
        if target in taken:
            raise SwapRefused(f"rename_columns: the old table's columns {taken[target]!r} and {column!r} would both "
                              f"become {target!r}; rows cannot be re-projected without losing one of them")
        taken[target] = column
    return mapping


def reproject(rows: pa.Table, mapping: Mapping[str, str]) -> pa.Table:
    """`rows` with their columns renamed by `mapping` (old -> new), values and order as they are."""
    return rows.rename_columns([mapping.get(name, name) for name in rows.column_names])


def below_filter(topic: str, log_start: Mapping[int, int]) -> str:
    """The rows of `topic` below each partition's log start (partitions whose log starts at 0 hold none)."""
    parts = [f"({metadata.PARTITION} == {p} and {metadata.OFFSET} < {n})"
             for p, n in sorted(log_start.items()) if n > 0]
    quoted = topic.replace("'", "''")
    return f"{metadata.TOPIC} == '{quoted}' and ({' or '.join(parts)})" if parts else "false"


def count_by_partition(rows: pa.Table) -> dict[int, int]:
    counts: dict[int, int] = {}
    for partition in rows[metadata.PARTITION].to_pylist():
        counts[partition] = counts.get(partition, 0) + 1
    return counts


def seed_parts(topic: str, rows: pa.Table, log_start: Mapping[int, int], partitions: Sequence[int]
               ) -> dict[TopicPartition, PartitionBuffer]:
    """One buffer per partition seeded, covering offsets 0..log start - 1: its commit records the log start."""
    parts = {}
    for partition in sorted(partitions):
        mine = rows.filter(pc.equal(rows[metadata.PARTITION], partition))
        parts[(topic, partition)] = PartitionBuffer(0, log_start[partition] - 1, [mine], mine.nbytes)
    return parts


# --- I/O -----------------------------------------------------------------------------------------


def made_under(live: Table) -> MadeUnder:
    properties = live.metadata.properties
    recorded = recorded_projection(properties)
    if recorded is not None:
        try:
            spec = table_config_from({"table": str(live.name()), **recorded.settings}, "tabletopic.projection")
        except ConfigError as exc:
            raise SwapRefused(f"the projection the live table records does not read: {exc}") from None
        return MadeUnder(spec.format, spec.upsert, tuple(spec.key), dict(spec.rename_columns),
                         spec.column_names == "lowercase")
    mode = upsert_mode(properties)
    keys = tuple(key_columns(live)) if mode is not None and mode.key_source == "value" else ()
    values = pa.schema([f for f in live.schema().as_arrow() if f.name not in metadata.NAMES])
    is_raw = values.names == raw.SCHEMA.names and all(pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)
                                                     for f in values)
    return MadeUnder("raw" if is_raw else None, mode, keys)


def rows_below(live: Table, topic: str, log_start: Mapping[int, int]) -> dict[int, int]:
    """How many of the live table's rows per partition lie below the log start."""
    rows = table_reader.read(live, columns=(metadata.PARTITION, metadata.OFFSET),
                             row_filter=below_filter(topic, log_start))
    return count_by_partition(rows)


def seed(catalog: Catalog, live_name: str, sink: TableSink, topic: str, log_start: Mapping[int, int],
         location: str) -> OffsetMap:
    """Seed `sink`'s table (the new version, holding no offsets yet) with the live table's rows and dead letters
    below the log start, re-projected; returns the offsets of the seed commit (empty: nothing to seed)."""
    spec = sink.spec
    live = catalog.load_table(live_name)
    live_schema = live.schema().as_arrow()
    old = made_under(live)
    why = refusal(old, spec, live_schema)
    if why is not None:
        raise SwapRefused(f"--seed-from-table: the rows of {live_name} below the log start cannot be re-projected "
                          f"under the new settings ({why}). Rebuild --from-timestamp a time the log still holds, "
                          f"or keep that setting")
    where = below_filter(topic, log_start)
    rows = table_reader.read(live, row_filter=where)
    live_letters = load_if_exists(catalog, dead_letter.dlq_identifier(live_name))
    letters = dead_letter.SCHEMA.empty_table() if live_letters is None else \
        table_reader.read(live_letters, row_filter=where).select(dead_letter.SCHEMA.names)
    partitions = sorted(set(count_by_partition(rows)) | set(count_by_partition(letters)))
    if not partitions:
        log.info("rebuild.seed_nothing", table=spec.table, why="no row of the live table below the log start")
        return {}
    keys = key_columns(live)
    mapping = column_mapping(live_schema.names, old, spec, keys)
    rows = reproject(rows, mapping)
    table = _made(catalog, spec, reproject(live_schema.empty_table(), mapping).schema, keys, location)
    sink.shape.use(table)
    if letters.num_rows:
        if load_if_exists(catalog, sink.dead_letter_committer.identifier) is None:
            create_table(catalog, sink.dead_letter_committer.identifier, dead_letter.SCHEMA, [], {},
                         location=f"{location}__dlq")
        sink.dead_letter_committer.commit(seed_parts(topic, letters, log_start, partitions))
    if spec.upsert is not None:
        rows = rows.append_column(FLAG_FIELD, pa.repeat(pa.scalar(False), rows.num_rows))
    outcome = sink.committer.commit(seed_parts(topic, rows, log_start, partitions))
    if outcome.fenced or outcome.replayed or not outcome.committed:
        raise SwapRefused(f"another process wrote {spec.table} meanwhile (a second rebuild?): this one stops")
    failpoints.reached(FAILPOINT)
    log.info("rebuild.seeded", table=spec.table, rows=outcome.rows, dead_letters=letters.num_rows,
             renamed={k: v for k, v in mapping.items() if k != v},
             offsets={f"{t}/{p}": n for (t, p), n in sorted(outcome.committed.items())})
    return outcome.committed


def _made(catalog: Catalog, spec: TableConfig, schema: pa.Schema, keys: Sequence[str], location: str) -> Table:
    """The new version's table, made from the seeded rows' schema under its partition spec as the writer makes
    one; one a killed seed made already gets the columns it lacks (the live table may have evolved since)."""
    existing = load_if_exists(catalog, spec.table)
    if existing is not None:
        missing = [f for f in schema if f.name not in existing.schema().as_arrow().names]
        if not missing:
            return existing
        with existing.update_schema() as update:
            update.union_by_name(pa.schema(missing))
        return catalog.load_table(spec.table)
    key_schema = pa.schema([schema.field(k) for k in keys]) if keys else None
    values = pa.schema([f for f in schema if f.name not in metadata.NAMES and f.name not in keys])
    properties = {**spec.properties, **partition_by_property(spec.partition_by),
                  **(spec.upsert.properties() if spec.upsert is not None else {})}
    return create_table(catalog, spec.table, table_schema(values, True, key_schema), spec.partition_by, properties,
                        identifier_fields=keys, location=location)
