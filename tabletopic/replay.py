"""`tabletopic dlq replay`: decode dead letters again (after a fix) and move the ones that now fit.

Exactly once without offsets: a dead letter is keyed by its (topic, partition, offset), which
both tables carry. Step 1 decodes the chosen dead letters with the table's current schema (and
evolves it, as the writer would). Step 2 appends the rows whose coordinates the table does not
hold yet, in a snapshot without an offsets map (recovery reads the newest ancestor that has
one). Step 3 deletes every replayed coordinate from `<table>__dlq`. A replay that dies between
steps 2 and 3 leaves rows in both tables (`audit` reports them as duplicates); running it again
finds them in the table, appends nothing, and finishes the delete.

Two kinds of dead letters are refused (left where they are, counted, and said): those of a topic
the table does not read per the config (a row a hostile topic put into `<table>__dlq` must not
reach the table), and those that hold only a prefix of their key or value (rows.py).
"""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import structlog
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.expressions import AlwaysTrue, And, BooleanExpression, EqualTo, In, Or, Reference
from pyiceberg.expressions.literals import literal
from pyiceberg.table import Table

from tabletopic.catalog import reader
from tabletopic.catalog.tables import load_if_exists
from tabletopic.commit.committer import append_files, for_our_commit, write_data_files
from tabletopic.commit.state_keys import over_state
from tabletopic.config import TableConfig
from tabletopic.core import metadata
from tabletopic.core.backoff import RetryPolicy
from tabletopic.core.conform import conform_table
from tabletopic.core.records import RecordChunk
from tabletopic.deadletter import rows as dead_letter
from tabletopic.decode.avro import WriterSchemas
from tabletopic.exceptions import CommitError, TabletopicError
from tabletopic.resolver import reserved_suffix
from tabletopic.routing import table_for
from tabletopic.sink import TableSink

if TYPE_CHECKING:
    from tabletopic.observe.progress import OnProgress

log = structlog.get_logger(__name__)

REPLAY_ID_KEY = "tabletopic.replay-id"
MAX_ATTEMPTS = 10
# Dead letters decoded at a time: what a progress report steps by (a partition's letters may be millions).
DECODE_AT_ONCE = 10_000

Coordinate = tuple[str, int, int]


@dataclass
class ReplayReport:
    chosen: int = 0  # dead letters the filter picked
    replayed: int = 0  # now rows of the table (appended by this run or found there)
    still_bad: int = 0  # decoded again and still refused: they stay
    appended: int = 0
    foreign: int = 0  # refused: from a topic the table does not read
    unrestorable: int = 0  # refused: only a prefix of the record was kept


def replay(
    catalog: Catalog,
    spec: TableConfig,
    group: str,
    writer_schemas: WriterSchemas | None,
    reason: str | None = None,
    dry_run: bool = False,
    on_progress: OnProgress | None = None,
) -> ReplayReport:
    """`on_progress`: told (dead-letter table, letters decoded, letters to decode) as step 1 goes."""
    if not spec.metadata_columns:
        raise TabletopicError(f"{spec.table}: replay needs the Kafka metadata columns to find rows again")
    letters_table = load_if_exists(catalog, dead_letter.dlq_identifier(spec.table))
    report = ReplayReport()
    if letters_table is None:
        return report
    chosen = letters_table.scan(
        row_filter=_equal(dead_letter.REASON, reason) if reason else AlwaysTrue()
    ).to_arrow()
    report.chosen = chosen.num_rows
    chosen, report.foreign, report.unrestorable = _replayable(chosen, spec)
    if not chosen.num_rows:
        return report

    # Step 1.
    sink = TableSink(replace(spec, errors="dlq", max_dead_letters_per_minute=None), catalog, group,
                     f"replay-{uuid.uuid4().hex[:8]}", RetryPolicy(), writer_schemas)
    decoded = 0
    for chunk in _chunks(chosen):
        for piece in _pieces(chunk, DECODE_AT_ONCE):
            sink.ingest(piece, time.monotonic())
            decoded += len(piece)
            if on_progress is not None:
                on_progress(dead_letter.dlq_identifier(spec.table), decoded, chosen.num_rows)
    parts = sink.buffer.take()
    rows = pa.concat_tables([held.rows() for held in parts.values()]) if parts else None
    report.still_bad = sum(held.rows().num_rows for held in sink.dead_letters.take().values())
    if rows is None or rows.num_rows == 0:
        return report
    report.replayed = rows.num_rows
    if dry_run:
        return report

    # Step 2.
    replay_id = str(uuid.uuid4())
    for _ in range(MAX_ATTEMPTS):
        table = catalog.load_table(spec.table)
        fresh = rows.filter(pc.invert(_is_in(rows, _coordinates_in(table, rows))))
        if fresh.num_rows:
            files = write_data_files(table, conform_table(fresh, table.schema().as_arrow()))
            try:
                append_files(table, files, {REPLAY_ID_KEY: replay_id})
            except CommitFailedException:
                continue
        report.appended = fresh.num_rows
        break
    else:
        raise CommitError(f"{spec.table}: replay append did not land after {MAX_ATTEMPTS} attempts")
    log.info("dlq.replayed", table=spec.table, rows=report.appended, replay_id=replay_id)

    # Step 3.
    condition = _matching(_coordinates(rows))
    for _ in range(MAX_ATTEMPTS):
        try:
            letters_now = catalog.load_table(letters_table.name())
            # Its snapshot repeats the table's state (the dead letters' offsets) like every snapshot tabletopic
            # makes; pyiceberg's own retry is off (`for_our_commit`): it would commit that state on a newer base.
            for_our_commit(letters_now).delete(delete_filter=condition,
                                               snapshot_properties=over_state(letters_now, {REPLAY_ID_KEY: replay_id}))
            break
        except CommitFailedException:
            continue
    else:
        raise CommitError(f"{spec.table}: dead letters replayed but not yet removed; run the replay again")
    log.info("dlq.removed", table=dead_letter.dlq_identifier(spec.table), rows=report.replayed)
    return report


def reads_topic(spec: TableConfig, topic: str) -> bool:
    """Whether the config entry's table reads `topic`: one it names, or one its pattern gives this table."""
    if topic in spec.all_topics:
        return True
    pattern = spec.topic_pattern
    return (pattern is not None and re.fullmatch(pattern, topic) is not None
            and table_for(spec.table, topic) == spec.table and reserved_suffix(spec.table) is None)


def _replayable(letters: pa.Table, spec: TableConfig) -> tuple[pa.Table, int, int]:
    """The letters replay may take; the counts of those from topics the table does not read, and of
    those cut short (both said in the log)."""
    topics = letters[metadata.TOPIC].to_pylist()
    read = {topic: reads_topic(spec, topic) for topic in set(topics)}
    foreign = Counter(topic for topic in topics if not read[topic])
    if foreign:
        log.warning("dlq.replay_refused", table=spec.table, dead_letters=sum(foreign.values()),
                    topics=dict(sorted(foreign.items())),
                    reason="from topics the table does not read (per the config): left in the dead-letter table")
    whole = [read[topic] for topic in topics]
    cut = [dead_letter.is_truncated(m) for m in letters[dead_letter.MESSAGE].to_pylist()]
    unrestorable = [w and c for w, c in zip(whole, cut, strict=True)]
    if any(unrestorable):
        offsets = [f"{t}/{p}@{o}" for t, p, o, bad in zip(topics, letters[metadata.PARTITION].to_pylist(),
                                                           letters[metadata.OFFSET].to_pylist(), unrestorable,
                                                           strict=True) if bad]
        log.warning("dlq.replay_refused", table=spec.table, dead_letters=len(offsets), records=offsets[:20],
                    reason="only a prefix of the key or value was kept: the record cannot be restored "
                           "(read it again from the topic, if it is still there)")
    keep = [w and not c for w, c in zip(whole, cut, strict=True)]
    return letters.filter(pa.array(keep, pa.bool_())), sum(foreign.values()), sum(unrestorable)


def _chunks(letters: pa.Table) -> list[RecordChunk]:
    chunks: dict[tuple[str, int], RecordChunk] = {}
    ordered = letters.sort_by([(metadata.TOPIC, "ascending"), (metadata.PARTITION, "ascending"),
                               (metadata.OFFSET, "ascending")])
    for row in ordered.to_pylist():
        key = (row[metadata.TOPIC], row[metadata.PARTITION])
        chunk = chunks.get(key)
        if chunk is None:
            chunk = chunks[key] = RecordChunk(*key)
        timestamp = row[metadata.TIMESTAMP]
        chunk.offsets.append(row[metadata.OFFSET])
        chunk.keys.append(row[metadata.KEY])
        chunk.values.append(row[dead_letter.VALUE])
        chunk.timestamps_ms.append(None if timestamp is None else int(timestamp.timestamp() * 1000))
        chunk.headers.append(row[metadata.HEADERS])
    return list(chunks.values())


def _pieces(chunk: RecordChunk, size: int) -> Iterator[RecordChunk]:
    """`chunk` in consecutive pieces of at most `size` records."""
    if len(chunk) <= size:
        yield chunk
        return
    for start in range(0, len(chunk), size):
        yield chunk.select(list(range(start, min(start + size, len(chunk)))))


def _coordinates(rows: pa.Table) -> set[Coordinate]:
    columns = [rows[name].to_pylist() for name in (metadata.TOPIC, metadata.PARTITION, metadata.OFFSET)]
    return set(zip(*columns, strict=True))


def _matching(coordinates: set[Coordinate]) -> BooleanExpression:
    by_partition: dict[tuple[str, int], list[int]] = {}
    for topic, partition, offset in coordinates:
        by_partition.setdefault((topic, partition), []).append(offset)
    terms: list[BooleanExpression] = [
        And(_equal(metadata.TOPIC, topic), _equal(metadata.PARTITION, partition),
            In(term=Reference(metadata.OFFSET), values={literal(offset) for offset in offsets}))
        for (topic, partition), offsets in sorted(by_partition.items())
    ]
    return terms[0] if len(terms) == 1 else Or(*terms)


def _equal(column: str, value: str | int) -> BooleanExpression:
    return EqualTo(term=Reference(column), value=literal(value))


def _coordinates_in(table: Table, rows: pa.Table) -> set[Coordinate]:
    present = reader.read(table, columns=(metadata.TOPIC, metadata.PARTITION, metadata.OFFSET),
                          row_filter=_matching(_coordinates(rows)))
    return _coordinates(present)


def _is_in(rows: pa.Table, coordinates: set[Coordinate]) -> pa.Array:
    return pa.array([c in coordinates for c in zip(
        rows[metadata.TOPIC].to_pylist(), rows[metadata.PARTITION].to_pylist(), rows[metadata.OFFSET].to_pylist(),
        strict=True)])
