"""A chunk of records → the table's rows for its good records, and the bad ones with their reasons.

Whatever a record makes the decoder, the schema evolution or the table creation raise, that record
alone is bad (`decoder_error`, `too_many_columns`, ...); only faults of the catalog, the object store
or the registry are raised (decode/isolate.py). What to do with the bad ones is error_policy.py's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
import structlog

from tabletopic.config import TableConfig
from tabletopic.core.conform import conform_table
from tabletopic.core.reasons import Reason
from tabletopic.core.records import RecordChunk
from tabletopic.decode.base import BadValue
from tabletopic.decode.isolate import Part, describe, is_infrastructure, isolate
from tabletopic.decode.names import NameCollision, lowercase_json
from tabletopic.decode.renames import column_renames, renamed_json_chunk, source_schema
from tabletopic.sink.rows import assemble, culprit, oversized, without_required_nulls
from tabletopic.sink.table_shape import TableShape

log = structlog.get_logger(__name__)


@dataclass
class Intaken:
    rows: pa.Table  # the good records' rows, in their order, in the table's schema
    good: list[int]  # the good records' indices in the chunk
    bad: list[BadValue]  # the others, by index


# Fills or checks what the records give besides their values (an upsert table's keys): the rows of `records`
# → those rows, the indices kept, the bad ones (by index in `records`).
Attach = Callable[[RecordChunk, pa.Table], tuple[pa.Table, list[int], list[BadValue]]]


class Intake:
    def __init__(self, spec: TableConfig, shape: TableShape, attach: Attach | None = None) -> None:
        self._attach = attach
        self.spec = spec
        self.identifier = spec.table
        self.shape = shape
        self._lowercase = spec.column_names == "lowercase"
        self._renames = column_renames(spec.rename_columns, self._lowercase)

    def read(self, chunk: RecordChunk) -> Intaken:
        pre_bad = oversized(chunk, self.spec.max_record_bytes)
        work = chunk
        if self._lowercase and self.spec.format == "json":
            work, collisions = self._lowercased(chunk, {b.index for b in pre_bad})
            pre_bad += collisions
        if self._renames and self.spec.format == "json":  # after folding: the sources are folded names
            work, collisions = renamed_json_chunk(work, self._renames, {b.index for b in pre_bad})
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
        return Intaken(rows, good, bad)

    def _decode_isolated(self, work: RecordChunk) -> tuple[pa.Table, list[int], list[BadValue], int]:
        """Rows of `work`'s good records (in order), their indices, the bad records, and how many
        records had fields the table ignores. Records on which decoding raises are found by
        bisection (decode/isolate.py); the others are decoded as if those were not there."""
        self.shape.start_batch()
        found = isolate(len(work), lambda lo, hi: self._decode_range(work, lo, hi))
        if self.shape.schema is None and self.spec.errors != "fail":
            self.shape.create_without_values()
        culprits = [culprit(index, exc) for index, exc in found.culprits]
        if culprits:
            log.warning("batch.culprits_isolated", table=self.identifier, culprits=len(culprits),
                        ranges_decoded=len(found.parts), first_error=culprits[0].reason[:200])
        schema = self.shape.schema
        tables = [conform_table(part.rows, schema) for part in found.parts if part.rows.num_rows] \
            if schema is not None else []
        rows = pa.concat_tables(tables) if tables else schema.empty_table() if schema is not None else pa.table({})
        good = [index for part in found.parts for index in part.good]
        bad = [b for part in found.parts for b in part.bad] + culprits
        return rows, good, bad, sum(part.dropped_fields for part in found.parts)

    def _decode_range(self, work: RecordChunk, lo: int, hi: int) -> Part:
        """Records lo..hi-1 of `work` decoded, evolved for and assembled into table rows."""
        chunk = work if (lo, hi) == (0, len(work)) else work.select(list(range(lo, hi)))
        if self.shape.decoder is None:
            self.shape.create_for(chunk)
        decoded = self.shape.decode(chunk)
        good = list(range(len(chunk))) if decoded.good is None else decoded.good
        assert self.shape.schema is not None
        records = chunk if len(good) == len(chunk) else chunk.select(good)
        rows = assemble(records, decoded.rows, self.shape.schema, self.spec.metadata_columns)
        attached: list[BadValue] = []
        if self._attach is not None:
            rows, kept, refused = self._attach(records, rows)
            attached = [b.at(good[b.index]) for b in refused]
            good = [good[i] for i in kept]
        rows, good, nulls = without_required_nulls(rows, good)
        bad = [b.at(lo + b.index) for b in [*decoded.bad, *attached, *nulls]]
        return Part(rows, [lo + i for i in good], bad, decoded.dropped_fields)

    def _lowercased(self, chunk: RecordChunk, skip: set[int]) -> tuple[RecordChunk, list[BadValue]]:
        schema = source_schema(self.shape.schema, self._renames) if self.shape.schema is not None else pa.schema([])
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
