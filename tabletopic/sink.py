"""One table's way from records to snapshots: decode, buffer, commit."""

from __future__ import annotations

import time
from collections.abc import Iterable

import pyarrow as pa
import structlog
from pyiceberg.catalog import Catalog
from pyiceberg.table import Table

from tabletopic.catalog.schema_check import check_schema
from tabletopic.catalog.tables import create_table, ensure_no_retry, load_if_exists, table_schema
from tabletopic.commit.buffer import TableBuffer
from tabletopic.commit.committer import CommitOutcome, Committer, table_offsets
from tabletopic.commit.offsets import OffsetMap, TopicPartition
from tabletopic.commit.retry import RetryPolicy
from tabletopic.config import TableConfig
from tabletopic.decode import metadata, raw
from tabletopic.decode.avro import AvroDecoder, WriterSchemas, avro_to_arrow, first_writer_schema
from tabletopic.decode.base import BadValue, Decoder
from tabletopic.decode.json import JsonDecoder, infer_schema
from tabletopic.exceptions import CommitError, RecordError, SchemaError
from tabletopic.kafka.records import RecordChunk

log = structlog.get_logger(__name__)


class TableSink:
    def __init__(
        self,
        spec: TableConfig,
        catalog: Catalog,
        group: str,
        writer_id: str,
        retry: RetryPolicy,
        writer_schemas: WriterSchemas | None = None,
    ) -> None:
        self.spec = spec
        self.identifier = spec.table
        self._catalog = catalog
        self._writer_schemas = writer_schemas
        self.buffer = TableBuffer()
        self.committer = Committer(catalog, spec.table, group, writer_id, retry)
        self._decoder: Decoder | None = None
        self._arrow_schema: pa.Schema | None = None
        table = load_if_exists(catalog, spec.table)
        if table is not None:
            self._use(table)

    # --- table and decoder ---------------------------------------------------------------------

    def _use(self, table: Table) -> None:
        table = ensure_no_retry(self._catalog, table)
        self._arrow_schema = table.schema().as_arrow()
        with_metadata = self.spec.metadata_columns
        value_schema = pa.schema([f for f in self._arrow_schema if not (with_metadata and f.name in metadata.NAMES)])
        self._decoder = self._make_decoder(value_schema)

    def _make_decoder(self, value_schema: pa.Schema) -> Decoder:
        if self.spec.format == "json":
            return JsonDecoder(value_schema)
        if self.spec.format == "avro":
            assert self._writer_schemas is not None, "config validation requires a registry for avro"
            return AvroDecoder(self._writer_schemas, value_schema)
        return raw.RawDecoder()

    def _value_schema_from(self, chunk: RecordChunk) -> pa.Schema:
        if self.spec.format == "json":
            return infer_schema(chunk.values)
        if self.spec.format == "avro":
            assert self._writer_schemas is not None
            writer = first_writer_schema(self._writer_schemas, chunk.values)
            return pa.schema([]) if writer is None else avro_to_arrow(writer)
        return raw.SCHEMA

    def _create_for(self, chunk: RecordChunk) -> None:
        """Create the table from the first batch, unless its very first record is already bad."""
        existing = load_if_exists(self._catalog, self.identifier)
        if existing is None:
            try:
                value_schema = self._value_schema_from(chunk)
                check_schema(table_schema(value_schema, self.spec.metadata_columns))
            except SchemaError as exc:
                reason = f"cannot create table {self.identifier}: {exc}"
                raise RecordError(chunk.topic, chunk.partition, chunk.first, reason) from None
            try:
                self._make_decoder(value_schema).decode(chunk)
            except BadValue as bad:
                if bad.index == 0:
                    raise self._record_error(chunk, bad) from None
            existing = create_table(
                self._catalog,
                self.identifier,
                table_schema(value_schema, self.spec.metadata_columns),
                self.spec.partition_by,
                self.spec.properties,
            )
        self._use(existing)

    # --- records -------------------------------------------------------------------------------

    def ingest(self, chunk: RecordChunk, now: float) -> None:
        """Decode and buffer a chunk; on a bad record, buffer the good ones before it and raise RecordError."""
        if self._decoder is None:
            self._create_for(chunk)
        assert self._decoder is not None
        try:
            values = self._decoder.decode(chunk)
        except BadValue as bad:
            if bad.index > 0:
                good = chunk.head(bad.index)
                self._buffer(good, self._decoder.decode(good), now)
            raise self._record_error(chunk, bad) from None
        self._buffer(chunk, values, now)

    def _record_error(self, chunk: RecordChunk, bad: BadValue) -> RecordError:
        return RecordError(chunk.topic, chunk.partition, chunk.offsets[bad.index], bad.reason)

    def _buffer(self, chunk: RecordChunk, values: pa.Table, now: float) -> None:
        rows = self._assemble(chunk, values)
        self.buffer.add((chunk.topic, chunk.partition), chunk.first, chunk.last, rows, now)

    def _assemble(self, chunk: RecordChunk, values: pa.Table) -> pa.Table:
        assert self._arrow_schema is not None
        meta = metadata.metadata_arrays(chunk) if self.spec.metadata_columns else {}
        arrays = []
        for field in self._arrow_schema:
            if field.name in meta:
                array = meta[field.name]
            elif field.name in values.column_names:
                array = values[field.name]
            else:
                array = pa.nulls(len(chunk), field.type)
            if array.type != field.type:
                array = array.cast(field.type)
            arrays.append(array)
        return pa.Table.from_arrays(arrays, schema=self._arrow_schema)

    # --- commits -------------------------------------------------------------------------------

    def start_offsets(self, tps: Iterable[TopicPartition]) -> OffsetMap:
        """The table's next offsets for these partitions (absent: the table holds none)."""
        table = load_if_exists(self._catalog, self.identifier)
        if table is None:
            return {}
        committed = table_offsets(table, self.committer.group)
        return {tp: committed[tp] for tp in tps if tp in committed}

    def is_flush_due(self, now: float, interval_s: float, max_bytes: int) -> bool:
        return self.buffer.is_flush_due(now, interval_s, max_bytes)

    def flush(self, tps: Iterable[TopicPartition] | None = None) -> CommitOutcome | None:
        """Commit the buffered partitions; on CommitError they go back to the buffer, nothing is dropped."""
        parts = self.buffer.take(tps)
        if not parts:
            return None
        try:
            outcome = self.committer.commit(parts)
        except CommitError:
            self.buffer.put_back(parts, time.monotonic())
            raise
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

    def drop(self, tps: Iterable[TopicPartition]) -> None:
        self.buffer.take(tps)
