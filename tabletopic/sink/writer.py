"""One table's buffers and its two committers: rows to the table, dead letters to `<table>__dlq`."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable

import pyarrow as pa
import structlog
from pyiceberg.catalog import Catalog

from tabletopic.catalog.projection import Cutover, check_cutover
from tabletopic.catalog.tables import create_table, load_if_exists
from tabletopic.commit import faults
from tabletopic.commit.buffer import PartitionBuffer, TableBuffer, flush_due
from tabletopic.commit.committer import CommitOutcome, Committer, table_newest_record_ms, table_offsets
from tabletopic.commit.offsets import OffsetMap, TopicPartition
from tabletopic.core import metadata
from tabletopic.core.backoff import RetryPolicy
from tabletopic.core.conform import conform_table
from tabletopic.core.records import RecordChunk
from tabletopic.deadletter import rows as dead_letter
from tabletopic.deadletter.topic import DeadLetterTopic
from tabletopic.decode.base import BadValue
from tabletopic.exceptions import CommitError, PermanentFault
from tabletopic.observe import metrics
from tabletopic.upsert.payload import UpsertPayload, with_flag

log = structlog.get_logger(__name__)


class TableWriter:
    def __init__(self, catalog: Catalog, identifier: str, group: str, writer_id: str, retry: RetryPolicy,
                 routed: bool, dead_letter_topic: DeadLetterTopic | None,
                 clock: Callable[[], float] = time.monotonic, upsert: bool = False,
                 dead_letter_location: str | None = None) -> None:
        """`upsert`: the rows carry the delete flag, and each commit replaces the rows of their keys.
        `dead_letter_location`: where `<table>__dlq`, if this writer creates it, puts its files."""
        self._dead_letter_location = dead_letter_location
        self.identifier = identifier
        self.upsert = upsert
        self._clock = clock  # the loop's: flush stamps are compared with its `now`
        self._catalog = catalog
        self._dead_letter_topic = dead_letter_topic
        self.buffer = TableBuffer()
        self.dead_letters = TableBuffer()
        self.committer = Committer(catalog, identifier, group, writer_id, retry,
                                   offset_column=metadata.OFFSET if routed else None,
                                   payload=UpsertPayload(identifier) if upsert else None)
        self.dead_letter_committer = Committer(catalog, dead_letter.dlq_identifier(identifier), group, writer_id,
                                               retry, offset_column=metadata.OFFSET)
        # What the table holds, as this worker last saw it: for lag and freshness.
        self.committed: OffsetMap = {}
        self.newest_record_ms: int | None = None
        self._flush_started: float | None = None

    def conform(self, schema: pa.Schema) -> None:
        """The buffered rows in the table's new schema."""
        target = with_flag(schema) if self.upsert else schema
        self.buffer.map_rows(lambda rows: conform_table(rows, target))

    def add_dead_letters(self, chunk: RecordChunk, bad: list[BadValue], first: int, last: int, now: float) -> None:
        letters = dead_letter.dead_letter_rows(chunk, bad, dt.datetime.now(dt.UTC))
        self.dead_letters.add((chunk.topic, chunk.partition), first, last, letters, now)
        metrics.record_dead_letters(self.identifier, (str(b.code) for b in bad))

    def start_offsets(self, tps: Iterable[TopicPartition]) -> OffsetMap:
        """The table's next offsets for these partitions (absent: the table holds none)."""
        table = load_if_exists(self._catalog, self.identifier)
        if table is None:
            return {}
        committed = table_offsets(table, self.committer.group)
        if self.committer.table_uuid is None:
            self.committer.check_identity(table)
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
        # Dead letters alone are due too: an upsert table that does not exist yet buffers nothing else.
        opened = [t for t in (self.buffer.opened_at, self.dead_letters.opened_at) if t is not None]
        return flush_due(now, min(opened, default=None), self._flush_started, interval_s, self.buffered_bytes,
                         max_bytes)

    def flush(self, tps: Iterable[TopicPartition] | None = None) -> CommitOutcome | None:
        """Commit the dead letters, then the rows; on CommitError both go back to their buffers.

        Dead letters go first: if the process dies between the two commits, the records are read
        again from the data table's offsets and the dead-letter table keeps only what it lacks.
        """
        wanted = None if tps is None else list(tps)
        letters = self.dead_letters.take(wanted)
        parts = self.buffer.take(wanted)
        if not parts and not letters:
            return None
        self._flush_started = self._clock()
        if not parts:  # an upsert table none of whose records had a key yet: no table to hold offsets
            try:
                self._commit_dead_letters(letters)
            except (CommitError, Cutover) as exc:
                self.dead_letters.put_back(letters, self._clock())
                if isinstance(exc, CommitError):
                    metrics.record_commit_failed(self.identifier)
                raise
            return None
        try:
            if letters:
                self._commit_dead_letters(letters)
            outcome = self.committer.commit(parts)
        except (CommitError, Cutover) as exc:  # a cutover holds the table: its rows wait, or are read again
            self.dead_letters.put_back(letters, self._clock())
            self.buffer.put_back(parts, self._clock())
            if isinstance(exc, CommitError):
                metrics.record_commit_failed(self.identifier)
            raise
        self.committed.update({**outcome.replayed, **outcome.fenced, **outcome.committed})
        self.newest_record_ms = max_known(self.newest_record_ms, outcome.newest_record_ms)
        metrics.record_commit(self.identifier, outcome.rows, outcome.files, outcome.nbytes, outcome.attempts,
                              outcome.conflicts, outcome.seconds, outcome.deletes)
        log.info(
            "commit.done" if outcome.committed else "commit.nothing",
            table=self.identifier,
            snapshot_id=outcome.snapshot_id,
            rows=outcome.rows,
            files=outcome.files,
            **({"delete_files": outcome.deletes} if self.upsert else {}),
            attempts=outcome.attempts,
            offsets={f"{t}/{p}": n for (t, p), n in outcome.committed.items()},
        )
        return outcome

    def _check_table_before_letters(self) -> None:
        """The dead letters commit first, and their table trims what it holds instead of fencing: letters read
        for a table that a cutover froze or replaced meanwhile must not land (they would trim away the letters
        of the range the writer reads again). So the data table is checked first; only flushes with letters
        pay for the load."""
        try:
            table = load_if_exists(self._catalog, self.identifier)
        except Exception as exc:  # as the committer judges it: a fault no retry fixes halts, an outage backs off
            fault = faults.permanent(exc)
            if fault is not None:
                raise PermanentFault(self.identifier, fault.reason, fault.fix, str(exc)) from exc
            if faults.is_transient(exc):
                raise CommitError(f"{self.identifier}: the table could not be loaded: {exc}") from exc
            raise
        if table is not None:
            self.committer.check_identity(table)
            check_cutover(self.identifier, table.metadata.properties, self.committer.projection, time.time())

    def _commit_dead_letters(self, letters: dict[TopicPartition, PartitionBuffer]) -> None:
        # Checked first, also before the dead-letter table is made: one made while a rebuild's cutover moves the
        # tables would stand where the new version's goes.
        self._check_table_before_letters()
        identifier = self.dead_letter_committer.identifier
        if load_if_exists(self._catalog, identifier) is None:
            create_table(self._catalog, identifier, dead_letter.SCHEMA, [], {}, location=self._dead_letter_location)
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
