"""`tabletopic audit --values`: each record read again, decoded on its own, compared with the table's row.

The offset audit proves each offset is held once; this proves the row at that offset holds that
record. Per partition, the records below the table's committed offset are read from the topic,
decoded by the reference path (audit_reference.py, never the writer's batch decoders), and
compared column by column — the `_kafka_*` columns too — with the table's row carrying the same
(partition, offset). A record the table does not hold but `<table>__dlq` does is compared with
its dead letter (key, value, timestamp, headers as they came). A deterministic sample by a hash
of (partition, offset) makes the check cheaper, and a rerun compares the same records.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.table import Table

from tabletopic.audit_reference import ValueReference, metadata_columns, reference_for, reference_rows
from tabletopic.catalog import reader
from tabletopic.catalog.tables import load_if_exists
from tabletopic.core import metadata
from tabletopic.core.conform import conform_array
from tabletopic.core.records import RecordChunk
from tabletopic.deadletter import rows as dead_letter
from tabletopic.decode.avro import WriterSchemas
from tabletopic.decode.renames import column_renames
from tabletopic.kafka.record_reader import read_partition

if TYPE_CHECKING:
    from tabletopic.observe.progress import OnProgress

# Differences a report names (the count covers all).
EXAMPLES = 10
# What a dead letter is compared on: the record as it came.
LETTER_COLUMNS = (metadata.KEY, dead_letter.VALUE, metadata.TIMESTAMP, metadata.HEADERS)
NOT_A_ROW = "(row)"


@dataclass
class Difference:
    partition: int
    offset: int
    column: str
    table_value: Any
    topic_value: Any

    def __str__(self) -> str:
        return (f"partition {self.partition} offset {self.offset} column {self.column}: "
                f"table {_short(self.table_value)} vs topic {_short(self.topic_value)}")


@dataclass
class ValueReport:
    sample: float = 1.0
    records: int = 0  # records read from the topic below the committed offsets
    sampled: int = 0
    rows_compared: int = 0
    letters_compared: int = 0
    absent: int = 0  # sampled but in neither table: the offset audit reports those
    differing: int = 0  # records whose row (or dead letter) differs from the topic
    examples: list[Difference] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.differing == 0

    def found(self, differences: Sequence[Difference]) -> None:
        self.differing += len(differences)
        self.examples.extend(differences[: max(EXAMPLES - len(self.examples), 0)])


# --- pure ----------------------------------------------------------------------------------------

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def in_sample(partition: int, offsets: np.ndarray, rate: float) -> np.ndarray:
    """Which of `offsets` (of `partition`) are in a `rate` sample: a hash of (partition, offset), so
    the same records are picked on every run."""
    if rate >= 1.0:
        return np.ones(len(offsets), dtype=bool)
    with np.errstate(over="ignore"):
        x = offsets.astype(np.uint64) + np.uint64(partition + 1) * _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53) < rate


def locate(wanted: np.ndarray, held_sorted: np.ndarray) -> np.ndarray:
    """For each of `wanted`, its index in `held_sorted` (ascending), or -1 if it is not there."""
    if held_sorted.size == 0:
        return np.full(len(wanted), -1, dtype=np.int64)
    index = np.searchsorted(held_sorted, wanted)
    clipped = np.minimum(index, held_sorted.size - 1)
    return np.where(held_sorted[clipped] == wanted, clipped, -1)


def compare_aligned(partition: int, offsets: Sequence[int], held: pa.Table, expected: pa.Table) -> list[Difference]:
    """Row i of `held` against row i of `expected` (the offset `offsets[i]`), on `expected`'s columns:
    one Difference per differing row, naming its first differing column."""
    count = len(offsets)
    first = np.full(count, -1, dtype=np.int64)
    names = expected.column_names
    for position, name in enumerate(names):
        differs = column_differs(held[name], expected[name])
        if differs is not None:
            first[differs & (first < 0)] = position
    differences = []
    for row in np.flatnonzero(first >= 0).tolist():
        name = names[first[row]]
        differences.append(Difference(partition, int(offsets[row]), name, held[name][row].as_py(),
                                      expected[name][row].as_py()))
    return differences


def column_differs(held: pa.ChunkedArray | pa.Array, expected: pa.ChunkedArray | pa.Array) -> np.ndarray | None:
    """Per row, whether the two columns differ (None: they are equal); nulls equal nulls, NaN equals NaN."""
    a = held.combine_chunks() if isinstance(held, pa.ChunkedArray) else held
    b = expected.combine_chunks() if isinstance(expected, pa.ChunkedArray) else expected
    if not a.type.equals(b.type):
        with contextlib.suppress(pa.ArrowException, TypeError, ValueError):  # else compared as Python values
            b = conform_array(b, a.type)
    if a.type.equals(b.type) and a.equals(b):
        return None
    flags = np.array([not same(x, y) for x, y in zip(a.to_pylist(), b.to_pylist(), strict=True)], dtype=bool)
    return flags if flags.any() else None


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def compare_chunk(
    report: ValueReport, chunk: RecordChunk, reference: ValueReference, schema: pa.Schema,
    rows: pa.Table, letters: pa.Table | None,
) -> None:
    """Compare one chunk of (sampled) records with the table's `rows` and dead `letters` of its partition,
    each sorted by `_kafka_offset`."""
    offsets = np.asarray(chunk.offsets, dtype=np.int64)
    in_table = locate(offsets, _offsets(rows))
    in_letters = locate(offsets, _offsets(letters)) if letters is not None else np.full(len(offsets), -1)
    expected = reference_rows(chunk, reference, schema)
    good = np.asarray(expected.good, dtype=np.int64)
    held = in_table[good] >= 0
    if held.any():
        picked = np.flatnonzero(held)
        report.found(compare_aligned(chunk.partition, offsets[good[picked]].tolist(),
                                     rows.take(in_table[good[picked]]), expected.rows.take(picked)))
        report.rows_compared += int(picked.size)
    refused = sorted(i for i in expected.bad if in_table[i] >= 0)
    report.found([Difference(chunk.partition, int(offsets[i]), NOT_A_ROW, "a row",
                             f"refused by the reference decode: {expected.bad[i]}") for i in refused])
    report.rows_compared += len(refused)
    as_letters = np.flatnonzero((in_table < 0) & (in_letters >= 0))
    if as_letters.size and letters is not None:
        came = chunk.select(as_letters.tolist())
        report.found(compare_aligned(chunk.partition, came.offsets, letters.take(in_letters[as_letters]),
                                     letter_rows(came)))
        report.letters_compared += int(as_letters.size)
    report.absent += int(((in_table < 0) & (in_letters < 0)).sum())


def letter_rows(chunk: RecordChunk) -> pa.Table:
    """What `<table>__dlq` must hold for these records."""
    columns = metadata_columns(chunk)
    # A dead letter keeps a prefix of a huge key or value (deadletter/rows.py).
    columns[metadata.KEY] = pa.array([dead_letter.kept(k) for k in chunk.keys], pa.binary())
    columns[dead_letter.VALUE] = pa.array([dead_letter.kept(v) for v in chunk.values], pa.binary())
    return pa.table({name: columns[name] for name in LETTER_COLUMNS})


def _offsets(rows: pa.Table | None) -> np.ndarray:
    if rows is None:
        return np.zeros(0, dtype=np.int64)
    return rows[metadata.OFFSET].to_numpy(zero_copy_only=False).astype(np.int64)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# --- I/O -----------------------------------------------------------------------------------------


def audit_values(
    catalog: Catalog, identifier: str, topic: str, kafka_settings: Mapping[str, str], fmt: str,
    ranges: Mapping[int, tuple[int, int]], sample: float = 1.0, lowercase: bool = False,
    writer_schemas: WriterSchemas | None = None, rename_columns: Mapping[str, str] | None = None,
    on_progress: OnProgress | None = None,
) -> ValueReport:
    """Compare the records of `ranges` (partition -> first offset, end) with the table and its dead letters;
    `fmt`, `lowercase`, `rename_columns`: the table's format, column-name folding and renames;
    `on_progress`: told ("topic/partition", offsets read, offsets to read) as the topic is read."""
    table = catalog.load_table(identifier)
    schema = table.schema().as_arrow()
    value_schema = pa.schema([f for f in schema if f.name not in metadata.NAMES])
    reference = reference_for(fmt, value_schema, lowercase, writer_schemas,
                              column_renames(rename_columns or {}, lowercase))
    dead_letter_table = load_if_exists(catalog, dead_letter.dlq_identifier(identifier))
    report = ValueReport(sample=sample)
    todo = {partition: (start, end) for partition, (start, end) in sorted(ranges.items()) if end > start}
    if on_progress is not None:
        for partition, (start, end) in todo.items():
            on_progress(f"{topic}/{partition}", 0, end - start)
    for partition, (start, end) in todo.items():
        rows = _partition_rows(table, topic, partition)
        letters = None if dead_letter_table is None else _partition_rows(
            dead_letter_table, topic, partition, (metadata.OFFSET, *LETTER_COLUMNS))
        for chunk in read_partition(kafka_settings, topic, partition, start, end):
            report.records += len(chunk)
            if on_progress is not None:
                on_progress(f"{topic}/{partition}", min(chunk.last + 1, end) - start, end - start)
            picked = np.flatnonzero(in_sample(partition, np.asarray(chunk.offsets, dtype=np.int64), sample))
            if picked.size == 0:
                continue
            sampled = chunk if picked.size == len(chunk) else chunk.select(picked.tolist())
            report.sampled += len(sampled)
            compare_chunk(report, sampled, reference, schema, rows, letters)
        if on_progress is not None:  # the range's last offsets may hold no record (a marker, compaction)
            on_progress(f"{topic}/{partition}", end - start, end - start)
    return report


def _partition_rows(table: Table, topic: str, partition: int, columns: Sequence[str] = ("*",)) -> pa.Table:
    rows = reader.read(table, columns=columns,
                       row_filter=f"{metadata.TOPIC} == '{topic}' and {metadata.PARTITION} == {partition}")
    return rows.sort_by(metadata.OFFSET)


def format_values(report: ValueReport) -> list[str]:
    share = "all" if report.sample >= 1.0 else f"a {report.sample:g} sample"
    lines = [f"values ({share}): {report.sampled} of {report.records} records compared: {report.rows_compared} "
             f"rows, {report.letters_compared} dead letters, {report.absent} in neither; "
             f"{report.differing} differ" + ("" if report.ok else "  FAIL")]
    lines += [f"  {difference}" for difference in report.examples]
    return lines
