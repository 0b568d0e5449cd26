"""One table's way from records to snapshots: decode, evolve, buffer, dead-letter, commit."""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import time
from collections import Counter
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc
import structlog
from pyiceberg.catalog import Catalog
from pyiceberg.table import Table

from tabletopic.catalog.calls import catalog_call
from tabletopic.catalog.evolution import ColumnCaps, TooManyColumns, check_caps, count_fields, plan_evolution
from tabletopic.catalog.evolve import LOGGED_CHANGES, evolve
from tabletopic.catalog.schema_check import check_schema
from tabletopic.catalog.tables import create_table, load_if_exists, table_schema
from tabletopic.commit.buffer import PartitionBuffer, TableBuffer, flush_due
from tabletopic.commit.committer import CommitOutcome, Committer, table_newest_record_ms, table_offsets
from tabletopic.commit.offsets import OffsetMap, TopicPartition
from tabletopic.config import TableConfig
from tabletopic.core import metadata
from tabletopic.core.backoff import RetryPolicy
from tabletopic.core.conform import conform_table
from tabletopic.core.reasons import Reason
from tabletopic.core.records import RecordChunk
from tabletopic.deadletter import rows as dead_letter
from tabletopic.deadletter.bounds import batch_summary
from tabletopic.deadletter.flood import DeadLetterFlood, DeadLetterRate
from tabletopic.deadletter.topic import DeadLetterTopic
from tabletopic.decode import raw
from tabletopic.decode.avro import AvroDecoder, WriterSchemas, first_writer_schema, writer_arrow_schema
from tabletopic.decode.base import BadValue, Decoded, Decoder, SchemaDrift
from tabletopic.decode.isolate import Part, describe, is_infrastructure, isolate
from tabletopic.decode.json import JsonDecoder, infer_schema
from tabletopic.decode.names import NameCollision, lowercase_json
from tabletopic.exceptions import CommitError, RecordError, SchemaError
from tabletopic.observe import metrics

log = structlog.get_logger(__name__)

# Schema changes one batch may ask for before its remaining misfits count as dead letters.
MAX_EVOLUTIONS_PER_BATCH = 3


class TableSink:
    def __init__(
        self,
        spec: TableConfig,
        catalog: Catalog,
        group: str,
        writer_id: str,
        retry: RetryPolicy,
        writer_schemas: WriterSchemas | None = None,
        dead_letter_topic: DeadLetterTopic | None = None,
        routed: bool = False,
    ) -> None:
        self.spec = spec
        # One of several tables a topic's records are split among: each sees every offset range,
        # and trims what it already holds instead of fencing (a fence would re-seek the siblings too).
        self.routed = routed
        self._dead_letter_topic = dead_letter_topic
        self.identifier = spec.table
        self._catalog = catalog
        self._writer_schemas = writer_schemas
        self.buffer = TableBuffer()
        self.dead_letters = TableBuffer()
        self.committer = Committer(catalog, spec.table, group, writer_id, retry,
                                   offset_column=metadata.OFFSET if routed else None)
        self.dead_letter_committer = Committer(catalog, dead_letter.dlq_identifier(spec.table), group, writer_id,
                                               retry, offset_column=metadata.OFFSET)
        self.bad_records: Counter[str] = Counter()  # by reason code, since start
        self._dead_letter_rate: DeadLetterRate | None = None  # with `max_dead_letters_per_minute`
        # What the table holds, as this worker last saw it: for lag and freshness.
        self.committed: OffsetMap = {}
        self.newest_record_ms: int | None = None
        self._flush_started: float | None = None
        self._lowercase = spec.column_names == "lowercase"
        self._decoder: Decoder | None = None
        self._arrow_schema: pa.Schema | None = None
        # Fields the batch being ingested may still add, once it made its first change (which any
        # number of fields may make, up to max_columns: catalog/evolution.py).
        self._batch_room = spec.max_new_columns_per_batch
        self._batch_changed = False
        table = load_if_exists(catalog, spec.table)
        if table is not None:
            self._use(table)

    # --- table and decoder ---------------------------------------------------------------------

    def _use(self, table: Table) -> None:
        self._arrow_schema = table.schema().as_arrow()
        with_metadata = self.spec.metadata_columns
        value_schema = pa.schema([f for f in self._arrow_schema if not (with_metadata and f.name in metadata.NAMES)])
        self._decoder = self._make_decoder(value_schema)
        schema = self._arrow_schema
        self.buffer.map_rows(lambda rows: conform_table(rows, schema))

    def _make_decoder(self, value_schema: pa.Schema) -> Decoder:
        if self.spec.format == "json":
            return JsonDecoder(value_schema, self.spec.json_drift)
        if self.spec.format == "avro":
            assert self._writer_schemas is not None, "config validation requires a registry for avro"
            return AvroDecoder(self._writer_schemas, value_schema, lowercase=self._lowercase,
                               max_items=self.spec.max_items)
        return raw.RawDecoder()

    def _value_schema_from(self, chunk: RecordChunk) -> pa.Schema:
        if self.spec.format == "json":
            return infer_schema(chunk.values)
        if self.spec.format == "avro":
            assert self._writer_schemas is not None
            writer = first_writer_schema(self._writer_schemas, chunk.values)
            try:
                return pa.schema([]) if writer is None else writer_arrow_schema(writer, self._lowercase)
            except NameCollision as exc:
                raise SchemaError("(value)", str(exc)) from None
        return raw.SCHEMA

    def _create_for(self, chunk: RecordChunk) -> None:
        """Create the table from the schema of the first batch's records (a range of them, when
        the whole batch cannot give one: see `_decode_isolated`)."""
        existing = self._load_if_exists()
        if existing is None:
            value_schema = self._value_schema_from(chunk)
            schema = table_schema(value_schema, self.spec.metadata_columns)
            check_schema(schema)
            added = count_fields(value_schema)
            check_caps(count_fields(schema) - added, added, ColumnCaps(self.spec.max_columns, None))
            existing = self._create(schema)
            self._added(added)
        self._use(existing)

    def _create_without_values(self) -> None:
        """The table of a first batch none of whose records gave a schema: its records are dead
        letters, and the offsets they used up must still be committed to a table."""
        existing = self._load_if_exists()
        if existing is None:
            values = raw.SCHEMA if self.spec.format == "raw" else pa.schema([])
            existing = self._create(table_schema(values, self.spec.metadata_columns))
        self._use(existing)

    def _create(self, schema: pa.Schema) -> Table:
        return create_table(self._catalog, self.identifier, schema, self.spec.partition_by, self.spec.properties)

    def _load_if_exists(self) -> Table | None:
        with catalog_call("load_table", self.identifier):
            return load_if_exists(self._catalog, self.identifier)

    def _caps(self, alone: bool) -> ColumnCaps:
        """The caps on a change for one record (`alone`) or for a range of them. A batch's first
        change is one record's, whatever its size: a range past the room is bisected down to it."""
        first = alone and not self._batch_changed
        return ColumnCaps(self.spec.max_columns, None if first else self._batch_room)

    def _added(self, fields: int) -> None:
        if fields > 0:
            self._batch_changed = True
            self._batch_room -= fields

    # --- records -------------------------------------------------------------------------------

    def ingest(self, chunk: RecordChunk, now: float, covers: tuple[int, int] | None = None) -> None:
        """Decode and buffer a chunk; bad records go the way of the table's error policy
        (`fail`: the good ones before the first bad one are buffered, then RecordError).
        `covers`: the offset range the chunk stands for (a routed table's share of a bigger one).

        Whatever a record makes the decoder, the schema evolution or the table creation raise,
        that record alone is a dead letter (`decoder_error`, `too_many_columns`, ...); only faults
        of the catalog, the object store or the registry are raised (decode/isolate.py)."""
        if covers is not None and not len(chunk):
            if self._arrow_schema is not None:  # nothing for this table, but the range is consumed
                self.buffer.add((chunk.topic, chunk.partition), *covers, self._arrow_schema.empty_table(), now)
            return
        tp = (chunk.topic, chunk.partition)
        limit = self.spec.max_record_bytes
        pre_bad = [
            BadValue(i, f"value of {len(v)} bytes is over max_record_bytes ({limit})", Reason.OVERSIZED)
            for i, v in enumerate(chunk.values) if v is not None and len(v) > limit
        ] if max(map(len, filter(None, chunk.values)), default=0) > limit else []
        work = chunk
        if self._lowercase and self.spec.format == "json":
            work, collisions = self._lowercased(chunk, {b.index for b in pre_bad})
            pre_bad += collisions
        positions = list(range(len(chunk)))
        if pre_bad:
            skip = {b.index for b in pre_bad}
            positions = [i for i in positions if i not in skip]
            work = work.select(positions)
        rows, good, found, dropped_fields = self._decode_isolated(work)
        good = [positions[i] for i in good]
        bad = sorted(pre_bad + [b.at(positions[b.index]) for b in found], key=lambda b: b.index)
        if dropped_fields:
            log.info("json.fields_ignored", table=self.identifier, records=dropped_fields,
                     partition=f"{chunk.topic}/{chunk.partition}", first_offset=chunk.first)
        first, last = covers or (chunk.first, chunk.last)
        if bad:
            self._on_bad(chunk, bad, rows, good, now, first, last)
        self.buffer.add(tp, first, last, rows, now)

    def _decode_isolated(self, work: RecordChunk) -> tuple[pa.Table, list[int], list[BadValue], int]:
        """Rows of `work`'s good records (in order), their indices, the bad records, and how many
        records had fields the table ignores. Records on which decoding raises are found by
        bisection (decode/isolate.py); the others are decoded as if those were not there."""
        self._batch_room = self.spec.max_new_columns_per_batch
        self._batch_changed = False
        found = isolate(len(work), lambda lo, hi: self._decode_range(work, lo, hi))
        if self._arrow_schema is None and self.spec.errors != "fail":
            self._create_without_values()
        culprits = [self._culprit(index, exc) for index, exc in found.culprits]
        if culprits:
            log.warning("batch.culprits_isolated", table=self.identifier, culprits=len(culprits),
                        ranges_decoded=len(found.parts), first_error=culprits[0].reason[:200])
        schema = self._arrow_schema
        tables = [conform_table(part.rows, schema) for part in found.parts if part.rows.num_rows] \
            if schema is not None else []
        rows = pa.concat_tables(tables) if tables else schema.empty_table() if schema is not None else pa.table({})
        good = [index for part in found.parts for index in part.good]
        bad = [b for part in found.parts for b in part.bad] + culprits
        return rows, good, bad, sum(part.dropped_fields for part in found.parts)

    def _decode_range(self, work: RecordChunk, lo: int, hi: int) -> Part:
        """Records lo..hi-1 of `work` decoded, evolved for and assembled into table rows."""
        chunk = work if (lo, hi) == (0, len(work)) else work.select(list(range(lo, hi)))
        if self._decoder is None:
            self._create_for(chunk)
        decoded = self._decode(chunk)
        good = list(range(len(chunk))) if decoded.good is None else decoded.good
        rows = self._assemble(chunk if len(good) == len(chunk) else chunk.select(good), decoded.rows)
        rows, good, nulls = self._without_required_nulls(rows, good)
        bad = [b.at(lo + b.index) for b in [*decoded.bad, *nulls]]
        return Part(rows, [lo + i for i in good], bad, decoded.dropped_fields)

    def _culprit(self, index: int, exc: Exception) -> BadValue:
        if isinstance(exc, TooManyColumns):
            return BadValue(index, str(exc), Reason.TOO_MANY_COLUMNS)
        if isinstance(exc, SchemaError):  # our own check of a new table's or column's schema
            return BadValue(index, str(exc), Reason.INCOMPATIBLE_SCHEMA)
        return BadValue(index, describe(exc), Reason.DECODER_ERROR)

    def _lowercased(self, chunk: RecordChunk, skip: set[int]) -> tuple[RecordChunk, list[BadValue]]:
        schema = self._arrow_schema if self._arrow_schema is not None else pa.schema([])
        values: list[bytes | None] = []
        bad: list[BadValue] = []
        for index, value in enumerate(chunk.values):
            if value is None or index in skip:
                values.append(value)
                continue
            try:
                values.append(lowercase_json(value, schema))
            except NameCollision as exc:
                values.append(value)
                bad.append(BadValue(index, str(exc), Reason.INCOMPATIBLE_SCHEMA))
            except Exception as exc:
                if is_infrastructure(exc):
                    raise
                values.append(value)
                bad.append(BadValue(index, describe(exc), Reason.DECODER_ERROR))
        return dataclasses.replace(chunk, values=values), bad

    def _decode(self, chunk: RecordChunk) -> Decoded:
        for _ in range(MAX_EVOLUTIONS_PER_BATCH):
            assert self._decoder is not None
            try:
                return self._decoder.decode(chunk)
            except SchemaDrift as drift:
                self._evolve(drift, alone=len(chunk) == 1)
        assert self._decoder is not None
        return self._decoder.decode(chunk, allow_drift=False)

    def _evolve(self, drift: SchemaDrift, alone: bool) -> None:
        assert self._arrow_schema is not None
        # Checked first against the schema this writer knows, so that a flood of new fields is refused
        # without a catalog round trip per bisection step; evolve() checks again on the fresh table.
        known = pa.schema([f for f in self._arrow_schema if f.name not in metadata.NAMES])
        plan = plan_evolution(known, drift.incoming, drift.additions_only)
        caps = self._caps(alone)
        if plan.needs_change:
            check_caps(count_fields(self._arrow_schema), count_fields(plan.target) - count_fields(known), caps)
        table, plan, added = evolve(self._catalog, self.identifier, drift.incoming, drift.additions_only, caps)
        self._added(added)
        if plan.incompatible:
            log.warning("schema.refused", table=self.identifier, reasons=plan.incompatible[:LOGGED_CHANGES],
                        reason_count=len(plan.incompatible))
        self._use(table)

    def _on_bad(self, chunk: RecordChunk, bad: list[BadValue], rows: pa.Table, good: list[int], now: float,
                range_first: int, range_last: int) -> None:
        tp = (chunk.topic, chunk.partition)
        if self.spec.errors == "fail":
            first = bad[0]
            if first.index > 0:
                kept = bisect.bisect_left(good, first.index)
                self.buffer.add(tp, range_first, chunk.offsets[first.index - 1], rows.slice(0, kept), now)
            reason = f"{first.code}: {first.reason}"
            raise RecordError(chunk.topic, chunk.partition, chunk.offsets[first.index], reason)

        over: BadValue | None = None  # the first bad record past the dead-letter rate limit
        limit = self.spec.max_dead_letters_per_minute if self.spec.errors == "dlq" else None
        if limit is not None:
            rate = self._dead_letter_rate = self._dead_letter_rate or DeadLetterRate(limit)
            room = rate.room(now) or 0
            if len(bad) > room:
                over, bad = bad[room], bad[:room]
                range_last = chunk.offsets[over.index] - 1
            rate.spend(len(bad), now)
        if bad:
            event = "record.dead_letter" if self.spec.errors == "dlq" else "record.skipped"
            self.bad_records.update(str(b.code) for b in bad)
            log.warning(event, table=self.identifier, **batch_summary(chunk, bad))
        if bad and self.spec.errors == "dlq":
            letters = dead_letter.dead_letter_rows(chunk, bad, dt.datetime.now(dt.UTC))
            self.dead_letters.add(tp, range_first, range_last, letters, now)
            metrics.record_dead_letters(self.identifier, (str(b.code) for b in bad))
        if over is not None:
            assert limit is not None and rate is not None
            if over.index > 0:  # the records before it are taken: the table reads again from it
                kept = bisect.bisect_left(good, over.index)
                self.buffer.add(tp, range_first, range_last, rows.slice(0, kept), now)
            raise DeadLetterFlood(self.identifier, chunk.topic, chunk.partition, chunk.offsets[over.index],
                                  rate.in_window(now) + 1, limit)

    def _assemble(self, chunk: RecordChunk, values: pa.Table) -> pa.Table:
        assert self._arrow_schema is not None
        meta = metadata.metadata_arrays(chunk) if self.spec.metadata_columns else {}
        decoded = set(values.column_names)  # a set: tables of thousands of columns
        arrays = []
        for field in self._arrow_schema:
            if field.name in meta:
                array = meta[field.name]
            elif field.name in decoded:
                array = values[field.name]
            else:
                array = pa.nulls(len(chunk), field.type)
            if array.type != field.type:
                array = array.cast(field.type)
            arrays.append(array)
        return pa.Table.from_arrays(arrays, schema=self._arrow_schema)

    def _without_required_nulls(self, rows: pa.Table, good: list[int]) -> tuple[pa.Table, list[int], list[BadValue]]:
        """Rows with a null in a required column (tables created elsewhere can have them) are bad."""
        required = [f.name for f in rows.schema if not f.nullable]
        if not required or rows.num_rows == 0:
            return rows, good, []
        missing = pc.or_kleene(*[pc.is_null(rows[name]) for name in required]) if len(required) > 1 \
            else pc.is_null(rows[required[0]])
        if not pc.any(missing).as_py():
            return rows, good, []
        flags = missing.to_pylist()
        bad = [BadValue(good[i], f"null for a required column ({', '.join(required)})", Reason.NULL_REQUIRED)
               for i, flag in enumerate(flags) if flag]
        kept = [g for g, flag in zip(good, flags, strict=True) if not flag]
        return rows.filter(pc.invert(missing)), kept, bad

    # --- commits -------------------------------------------------------------------------------

    def exists(self) -> bool:
        return self._decoder is not None or load_if_exists(self._catalog, self.identifier) is not None

    def start_offsets(self, tps: Iterable[TopicPartition]) -> OffsetMap:
        """The table's next offsets for these partitions (absent: the table holds none)."""
        table = load_if_exists(self._catalog, self.identifier)
        if table is None:
            return {}
        committed = table_offsets(table, self.committer.group)
        wanted = list(tps)
        starts = {tp: committed[tp] for tp in wanted if tp in committed}
        self.committed.update(starts)
        for tp in wanted:  # reading starts here: what an earlier ownership saw no longer counts
            self.committer.seen.pop(tp, None)
        self.committer.seen.update(starts)
        self.newest_record_ms = max_known(self.newest_record_ms, table_newest_record_ms(table))
        return starts

    @property
    def buffered_bytes(self) -> int:
        return self.buffer.nbytes + self.dead_letters.nbytes

    def is_flush_due(self, now: float, interval_s: float, max_bytes: int) -> bool:
        return flush_due(now, self.buffer.opened_at, self._flush_started, interval_s, self.buffer.nbytes, max_bytes)

    def flush(self, tps: Iterable[TopicPartition] | None = None) -> CommitOutcome | None:
        """Commit the dead letters, then the rows; on CommitError both go back to their buffers.

        Dead letters go first: if the process dies between the two commits, the records are read
        again from the data table's offsets and the dead-letter table keeps only what it lacks.
        """
        wanted = None if tps is None else list(tps)
        letters = self.dead_letters.take(wanted)
        parts = self.buffer.take(wanted)
        if not parts:
            return None
        self._flush_started = time.monotonic()
        try:
            if letters:
                self._commit_dead_letters(letters)
            outcome = self.committer.commit(parts)
        except CommitError:
            self.dead_letters.put_back(letters, time.monotonic())
            self.buffer.put_back(parts, time.monotonic())
            metrics.record_commit_failed(self.identifier)
            raise
        self.committed.update({**outcome.replayed, **outcome.fenced, **outcome.committed})
        self.newest_record_ms = max_known(self.newest_record_ms, outcome.newest_record_ms)
        metrics.record_commit(self.identifier, outcome.rows, outcome.files, outcome.nbytes, outcome.attempts,
                              outcome.conflicts, outcome.seconds)
        log.info(
            "commit.done" if outcome.committed else "commit.nothing",
            table=self.identifier,
            snapshot_id=outcome.snapshot_id,
            rows=outcome.rows,
            files=outcome.files,
            attempts=outcome.attempts,
            offsets={f"{t}/{p}": n for (t, p), n in outcome.committed.items()},
        )
        return outcome

    def _commit_dead_letters(self, letters: dict[TopicPartition, PartitionBuffer]) -> None:
        identifier = self.dead_letter_committer.identifier
        if load_if_exists(self._catalog, identifier) is None:
            create_table(self._catalog, identifier, dead_letter.SCHEMA, [], {})
        outcome = self.dead_letter_committer.commit(letters)
        log.info("dead_letters.committed", table=identifier, rows=outcome.rows,
                 offsets={f"{t}/{p}": n for (t, p), n in outcome.committed.items()})
        if self._dead_letter_topic is not None:
            # Every letter of the flush, even those an earlier attempt committed: a copy that failed
            # to send then is sent now (at least once).
            self._dead_letter_topic.send(pa.concat_tables([held.rows() for held in letters.values()]))

    def drop(self, tps: Iterable[TopicPartition]) -> None:
        wanted = list(tps)
        self.buffer.take(wanted)
        self.dead_letters.take(wanted)


def max_known(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)
