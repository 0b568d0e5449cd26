"""An upsert table's intake: every record gets its key, a tombstone becomes a delete of its key, and each
row carries the delete flag the commit's dedupe reads (tabletopic/upsert/payload.py).

The key of a record is its Kafka key (decoded by `key_format`: a JSON or Avro record's fields, or one `_key`
column) or, with `key:`, columns of its value. A record whose key is missing, cannot be decoded, does not
fit the key columns' types, or disagrees with a same-named value field is a dead letter: it never changes
the state of another key. Tombstones leave the chunk before value decoding, so they keep the fast paths."""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pyarrow.compute as pc

from tabletopic.config import TableConfig
from tabletopic.core.reasons import Reason
from tabletopic.core.records import RecordChunk
from tabletopic.core.upsert_mode import DELETE_FLAG, UpsertMode
from tabletopic.decode.base import BadValue
from tabletopic.decode.keys import DecodedKeys
from tabletopic.decode.names import lowercase_json
from tabletopic.decode.renames import column_renames, renamed_json_keys, source_names
from tabletopic.sink.envelope import debezium_avro_chunk, debezium_chunk
from tabletopic.sink.intake import Intake, Intaken
from tabletopic.sink.rows import assemble
from tabletopic.sink.table_shape import TableShape


class KeyedIntake:
    def __init__(self, spec: TableConfig, shape: TableShape, mode: UpsertMode) -> None:
        self.spec = spec
        self.shape = shape
        self.mode = mode
        self.values = Intake(spec, shape, attach=self._attach_keys)
        self._renames = column_renames(spec.rename_columns, spec.column_names == "lowercase")

    def read(self, chunk: RecordChunk) -> Intaken:
        envelope_bad: list[BadValue] = []
        if self.mode.envelope == "debezium":
            if self.spec.format == "avro":
                assert self.shape.envelope_reader is not None and self.shape.row_schemas is not None
                unwrapped = debezium_avro_chunk(chunk, self.shape.envelope_reader, self.shape.row_schemas,
                                                self.spec.cdc_columns)
            else:
                # `after` and `before` hold the fields under their source names: renamed after this step.
                columns = {} if self.shape.schema is None else {f.name: f.type for f in self.shape.schema}
                columns = dict(zip(source_names(list(columns), self._renames), columns.values(), strict=True))
                key_names = source_names(self.shape.key_names, self._renames)
                unwrapped = debezium_chunk(chunk, self.spec.cdc_columns, key_names or None, columns)
            chunk, envelope_bad = unwrapped.chunk, unwrapped.bad
            if unwrapped.declared is not None:
                self.shape.declared = unwrapped.declared
        if self.spec.column_names == "lowercase" and self.mode.key_format == "json":
            chunk = _lowercase_keys(chunk)
        if self._renames and self.mode.key_format == "json":
            chunk, collisions = renamed_json_keys(chunk, self._renames, {b.index for b in envelope_bad})
            envelope_bad += collisions
        skip = {b.index for b in envelope_bad}
        tombstones = [i for i, value in enumerate(chunk.values) if value is None and i not in skip]
        keyed = [i for i in range(len(chunk)) if i not in skip and chunk.values[i] is not None]
        # Every record's key is checked before its value: a bad key is the record's reason, whatever its value.
        key_bad: list[BadValue] = []
        if self.mode.key_source == "kafka-key":
            key_bad = self._bad_keys(chunk, keyed)
        skip |= {b.index for b in key_bad}
        values = [i for i in keyed if i not in skip]
        taken = self.values.read(chunk.select(values))
        good = [values[i] for i in taken.good]
        bad = [b.at(values[b.index]) for b in taken.bad]
        rows = taken.rows
        # After the values: a table they created types the tombstones' keys (never a cast of a decoded key).
        deletes, delete_keys = self._delete_keys(chunk, tombstones, key_bad)
        if deletes:
            if self.shape.schema is None:
                self.shape.create_for_keys(delete_keys)
            assert self.shape.schema is not None
            gone = assemble(chunk.select(deletes), delete_keys, self.shape.schema, self.spec.metadata_columns)
            if rows.num_rows == 0 and rows.schema != gone.schema:
                rows = gone.schema.empty_table()
            rows = _with_flag(rows, False)
            gone = _with_flag(gone, True)
            order = pc.array_sort_indices(pa.array(good + deletes, pa.int64()))
            rows = pa.concat_tables([rows, gone]).take(order)
            good = sorted(good + deletes)
        elif self.shape.schema is not None:
            rows = _with_flag(rows, False)
        return Intaken(rows, good, sorted([*envelope_bad, *key_bad, *bad], key=lambda b: b.index))

    def _bad_keys(self, chunk: RecordChunk, indices: list[int]) -> list[BadValue]:
        decoded = self.shape.key_decoder().decode([chunk.keys[i] for i in indices])
        return [b.at(indices[b.index]) for b in decoded.bad]

    def _delete_keys(self, chunk: RecordChunk, tombstones: list[int],
                     key_bad: list[BadValue]) -> tuple[list[int], pa.Table]:
        """The tombstones that name a key, and those keys (in the key columns); the others are added to
        `key_bad`. With `key:` value columns, a tombstone's Kafka key must hold those columns."""
        decoded = self.shape.key_decoder().decode([chunk.keys[i] for i in tombstones])
        refused = {b.index for b in decoded.bad}
        key_bad += [b.at(tombstones[b.index]) for b in decoded.bad]
        keys = decoded.table
        if self.mode.key_source == "value":
            keys, refused = _value_key_columns(decoded, self.spec.key, tombstones, refused, key_bad)
        kept = [n for n in range(len(tombstones)) if n not in refused]
        return [tombstones[n] for n in kept], keys.take(pa.array(kept, pa.int64()))

    def _attach_keys(self, records: RecordChunk, rows: pa.Table) -> tuple[pa.Table, list[int], list[BadValue]]:
        """`rows` (one per record of `records`, in the table's schema) with their key columns filled from the
        records' keys; the indices kept and the bad ones."""
        names = self.shape.key_names
        if self.mode.key_source == "value":
            return _without_null_keys(rows, names)
        decoded = self.shape.key_decoder().decode(records.keys)
        bad = list(decoded.bad)
        refused = {b.index for b in bad}
        for name in names:
            # Both in the column's type: the keys were decoded into the table's key types, the values too.
            key = decoded.table.column(name).cast(rows.schema.field(name).type)
            value = rows.column(name)
            differs = pc.fill_null(pc.and_(pc.is_valid(value), pc.not_equal(value, key)), False)
            for index in pc.indices_nonzero(differs).to_pylist():
                if index not in refused:
                    refused.add(index)
                    bad.append(BadValue(index, f"the value's {name!r} differs from the record's key",
                                        Reason.KEY_MISMATCH))
            rows = rows.set_column(rows.schema.get_field_index(name), rows.schema.field(name), key)
        if not refused:
            return rows, list(range(rows.num_rows)), bad
        kept = [i for i in range(rows.num_rows) if i not in refused]
        return rows.take(pa.array(kept, pa.int64())), kept, bad


def _lowercase_keys(chunk: RecordChunk) -> RecordChunk:
    """JSON keys with their field names in lower case, as `column_names: lowercase` makes the value's."""
    keys = [None if key is None else lowercase_json(key, pa.schema([])) for key in chunk.keys]
    return dataclasses.replace(chunk, keys=keys)


def _with_flag(rows: pa.Table, deletes: bool) -> pa.Table:
    return rows.append_column(pa.field(DELETE_FLAG, pa.bool_(), nullable=False),
                              pa.array([deletes] * rows.num_rows, pa.bool_()))


def _without_null_keys(rows: pa.Table, names: list[str]) -> tuple[pa.Table, list[int], list[BadValue]]:
    null = pc.is_null(rows.column(names[0]))
    for name in names[1:]:
        null = pc.or_(null, pc.is_null(rows.column(name)))
    missing = pc.indices_nonzero(null).to_pylist()
    if not missing:
        return rows, list(range(rows.num_rows)), []
    bad = [BadValue(i, f"no value for the key column(s) {', '.join(names)}", Reason.MISSING_KEY) for i in missing]
    kept = [i for i in range(rows.num_rows) if i not in set(missing)]
    return rows.take(pa.array(kept, pa.int64())), kept, bad


def _value_key_columns(decoded: DecodedKeys, key: list[str], tombstones: list[int], refused: set[int],
                       key_bad: list[BadValue]) -> tuple[pa.Table, set[int]]:
    """A tombstone of a table keyed by value columns deletes the key its Kafka key's fields name."""
    absent = [k for k in key if k not in decoded.table.column_names]
    refused = set(refused)
    if absent:
        for n in range(len(tombstones)):
            if n not in refused:
                key_bad.append(BadValue(tombstones[n], f"a tombstone whose Kafka key has no {', '.join(absent)}: "
                                                       "nothing says which key to delete", Reason.MISSING_KEY))
                refused.add(n)
        return pa.table({k: pa.nulls(len(tombstones)) for k in key}), refused
    keys = decoded.table.select(key)
    for n, row in enumerate(keys.to_pylist()):
        if n not in refused and None in row.values():
            key_bad.append(BadValue(tombstones[n], "a tombstone whose Kafka key lacks a key column's value",
                                    Reason.MISSING_KEY))
            refused.add(n)
    return keys, refused
