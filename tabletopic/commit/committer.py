"""Commits buffered rows to one Iceberg table under the exactly-once protocol (docs/architecture.md).

The committer owns its retry loop: pyiceberg's own retry is switched off for our commits
(`without_pyiceberg_retries`) because it re-applies an append on a new base without the
offset check below. The table's property is left alone, so other engines keep their retries.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc
import structlog
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException, CommitStateUnknownException, NoSuchTableError
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot

from tabletopic.catalog.projection import (
    PROJECTION_HASH_KEY,
    Cutover,
    TableFrozen,
    TableReplaced,
    check_cutover,
    swap_under_way,
)
from tabletopic.catalog.pyiceberg_private import check_arrow_schema, data_files_from_arrow
from tabletopic.commit import faults
from tabletopic.commit.buffer import PartitionBuffer
from tabletopic.commit.offsets import (
    COMMIT_ID_KEY,
    WRITER_ID_KEY,
    OffsetMap,
    TopicPartition,
    Verdict,
    committed_offsets,
    committed_topic_ids,
    encode_offsets,
    encode_topic_ids,
    judge,
    merge_offsets,
    offsets_key,
    stale_topics,
    topic_ids_key,
    topic_ids_to_record,
)
from tabletopic.commit.state_keys import over_state
from tabletopic.core.backoff import RetryPolicy
from tabletopic.core.conform import conform_table
from tabletopic.exceptions import CommitError, PermanentFault

log = structlog.get_logger(__name__)

NEWEST_RECORD_KEY = "tabletopic.newest-record-ms"
CONFLICT_BACKOFF_STEPS = 3  # after a conflict the backoff grows three steps at most (0.2 s with the defaults)
TIMESTAMP_COLUMN = "_kafka_timestamp"


@dataclass
class CommitOutcome:
    committed: OffsetMap = field(default_factory=dict)  # partition -> next offset now in the table
    replayed: OffsetMap = field(default_factory=dict)  # already in the table, dropped: resume at this offset
    fenced: OffsetMap = field(default_factory=dict)  # overlapped another writer: re-seek to this offset
    snapshot_id: int | None = None
    attempts: int = 0
    rows: int = 0
    files: int = 0
    nbytes: int = 0  # of the data files
    deletes: int = 0  # equality-delete files (upsert tables)
    conflicts: int = 0  # attempts that met another writer's snapshot
    newest_record_ms: int | None = None
    seconds: float = 0.0
    stale: set[str] = field(default_factory=set)  # topics read from another incarnation than the table's: fenced


def ancestors(table: Table, stop_at: int | None = None) -> Iterator[Snapshot]:
    """The current snapshot and its ancestors, newest first: up to (not including) `stop_at`, or to the
    first one the table no longer has (expired). Callers stop early: every walk per commit is bounded."""
    snapshot = table.current_snapshot()
    while snapshot is not None and snapshot.snapshot_id != stop_at:
        yield snapshot
        parent = snapshot.parent_snapshot_id
        snapshot = table.snapshot_by_id(parent) if parent is not None and parent != stop_at else None


def snapshot_summaries(table: Table, stop_at: int | None = None) -> Iterator[dict[str, str | None]]:
    """Summaries of the current snapshot and its ancestors, newest first (see `ancestors`)."""
    for snapshot in ancestors(table, stop_at):
        summary = snapshot.summary
        yield {} if summary is None else dict(summary.additional_properties)


def table_offsets(table: Table, group: str) -> OffsetMap:
    return committed_offsets(snapshot_summaries(table), group)


def table_topic_ids(table: Table, group: str) -> dict[str, str]:
    return committed_topic_ids(snapshot_summaries(table), group)


def table_newest_record_ms(table: Table) -> int | None:
    """The newest Kafka timestamp the table's commits have recorded (ms), if any."""
    for summary in snapshot_summaries(table):
        newest = summary.get(NEWEST_RECORD_KEY)
        if newest:
            return int(newest)
    return None


@dataclass
class Written:
    """What a payload wrote for one set of buffered rows, before any commit: reused by every retry."""

    files: list[DataFile]  # data files
    deletes: list[DataFile] = field(default_factory=list)  # equality-delete files
    rows: int = 0  # rows in the data files


class Payload(Protocol):
    """How buffered rows become files and how those files join a snapshot: appended rows (`AppendPayload`)
    or an upsert's rows and deletes (tabletopic/upsert/payload.py). The protocol around it is the same."""

    def write(self, table: Table, rows: pa.Table) -> Written: ...

    def commit(self, table: Table, written: Written, properties: dict[str, str]) -> int | None:
        """One snapshot holding `written` and carrying `properties`; raises CommitFailedException if
        the table moved since `table` was loaded."""
        ...


class AppendPayload:
    def write(self, table: Table, rows: pa.Table) -> Written:
        # Another writer may have evolved the table since these rows were decoded.
        rows = conform_table(rows, table.schema().as_arrow())
        return Written(write_data_files(table, rows), rows=rows.num_rows)

    def commit(self, table: Table, written: Written, properties: dict[str, str]) -> int | None:
        return append_files(table, written.files, properties)


class Committer:
    """One table's commit path: reload → check → append, in a loop with backoff."""

    def __init__(
        self,
        catalog: Catalog,
        identifier: str,
        group: str,
        writer_id: str,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        offset_column: str | None = None,
        payload: Payload | None = None,
    ) -> None:
        """With `offset_column`, a batch the table partly holds is trimmed to what it lacks instead
        of fenced: for dead letters, whose rows each carry their offset and whose table may run
        ahead of the data table's (it commits first). `payload`: appended rows unless told."""
        self.payload = payload or AppendPayload()
        self.catalog = catalog
        self.identifier = identifier
        self.group = group
        self.writer_id = writer_id
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self.offset_column = offset_column
        # Topic -> the id of the topic the buffered records were read from (set by the service):
        # recorded with the offsets, and a batch read from another incarnation than the table's is fenced.
        self.topic_ids: Mapping[str, str] = {}
        # The table's next offset per partition as this writer last saw it (where it started reading, its
        # own commits). Offsets never go back but by a reset (or a rollback): a table found below it
        # asks for a range this writer has read past, so the batch is fenced and read again from there.
        self.seen: OffsetMap = {}
        # The projection hash the rows are made under (catalog/projection.py), recorded with each commit; a
        # table recording another refuses the commit (ProjectionChanged). None: dead letters, no projection.
        self.projection: str | None = None
        # The uuid of the table this writer reads for and commits to: another table under the name (a rebuild's
        # cutover or rollback) refuses the commit (TableReplaced). None until first seen.
        self.table_uuid: str | None = None

    def load(self) -> Table:
        try:
            table = self.catalog.load_table(self.identifier)
        except NoSuchTableError:
            swap = swap_under_way(self.catalog, self.identifier)
            if swap is not None:  # between two renames of a cutover: wait, as for its freeze
                raise TableFrozen(self.identifier, swap, time.time()) from None
            raise
        self.check_identity(table)
        return table

    def check_identity(self, table: Table) -> None:
        """Refuse a table other than the one this writer has been committing to (and learn the first one)."""
        found = str(table.metadata.table_uuid)
        if self.table_uuid is None:
            self.table_uuid = found
        elif found != self.table_uuid:
            raise TableReplaced(self.identifier, self.table_uuid, found)

    def commit(self, parts: dict[TopicPartition, PartitionBuffer]) -> CommitOutcome:
        """Commit what the table does not hold yet.

        Step 1. Reload the table and read its committed offsets.
        Step 2. Judge each partition: commit, replay (drop) or fence (drop, re-seek).
        Step 3. Write the data files once for the partitions to commit (again only if that set changes).
        Step 4. Append them in one snapshot carrying the merged offsets map and a commit id.
        Step 5. On a conflict or an outage: back off and start over at step 1.
                On an unknown commit state: reload and look for our commit id before deciding.
        """
        outcome = CommitOutcome()
        commit_id = str(uuid.uuid4())
        # The files fit one set of ranges under one partition spec and schema: another writer's ALTER
        # TABLE between attempts (Spark, pyiceberg) makes them wrong for the new spec, so they are rewritten.
        written_for: tuple[frozenset[tuple[TopicPartition, int, int]], int, int] | None = None
        first_base: int | None = None  # the current snapshot at the first load: ours can only come after it
        based = False
        newest: int | None = None
        attempted: OffsetMap = {}  # the offsets of the last append tried
        written = Written([])
        started = time.monotonic()
        while True:
            outcome.attempts += 1
            conflicts_before = outcome.conflicts
            try:
                # Step 1.
                table = self.load()
                if not based:
                    base = table.current_snapshot()
                    first_base, based = (base.snapshot_id if base is not None else None), True
                elif self._landed(table, commit_id, first_base):
                    # The last attempt's unknown state was a success: report what it committed.
                    outcome.committed, outcome.newest_record_ms = attempted, newest
                    self.seen.update(attempted)
                    return outcome
                # A rebuild's cutover freezing the table, or a table made under another projection.
                check_cutover(self.identifier, table.metadata.properties, self.projection, time.time())
                committed = table_offsets(table, self.group)
                recorded_ids = table_topic_ids(table, self.group)
                # Step 2.
                outcome.replayed, outcome.fenced, to_commit = {}, {}, {}
                outcome.stale = stale_topics(recorded_ids, self.topic_ids)
                for tp, held in parts.items():
                    if tp[0] in outcome.stale:
                        outcome.fenced[tp] = committed.get(tp, held.first)
                        continue
                    if self._went_back(tp, committed.get(tp)):
                        outcome.fenced[tp] = committed[tp]
                        continue
                    verdict = judge(held.offsets, committed.get(tp))
                    if verdict is Verdict.COMMIT:
                        to_commit[tp] = held
                    elif verdict is Verdict.REPLAY:
                        outcome.replayed[tp] = committed[tp]
                    elif self.offset_column is not None:
                        to_commit[tp] = held.from_offset(committed[tp], self.offset_column)
                    else:
                        outcome.fenced[tp] = committed[tp]
                if outcome.replayed or outcome.fenced:
                    log.warning(
                        "commit.dropped_overlap",
                        table=self.identifier,
                        replayed={f"{t}/{p}": n for (t, p), n in outcome.replayed.items()},
                        fenced={f"{t}/{p}": n for (t, p), n in outcome.fenced.items()},
                    )
                self.seen.update({**outcome.replayed, **outcome.fenced})
                if not to_commit:
                    outcome.committed = {}
                    return outcome
                # Step 3.
                ranges = frozenset((tp, held.first, held.last) for tp, held in to_commit.items())
                layout = (ranges, table.metadata.default_spec_id, table.metadata.current_schema_id)
                if written_for != layout:
                    rows = pa.concat_tables([held.rows() for held in to_commit.values()])
                    written = self.payload.write(table, rows)
                    written_for = layout
                    outcome.rows, outcome.files = written.rows, len(written.files)
                    outcome.deletes = len(written.deletes)
                    outcome.nbytes = sum(f.file_size_in_bytes for f in written.files)
                    newest = _newest_record_ms(rows)
                # Step 4.
                new_offsets = {tp: held.last + 1 for tp, held in to_commit.items()}
                attempted = new_offsets
                properties = {
                    offsets_key(self.group): encode_offsets(merge_offsets(committed, new_offsets)),
                    COMMIT_ID_KEY: commit_id,
                    WRITER_ID_KEY: self.writer_id,
                    **_topic_ids_property(self.group, recorded_ids, {tp[0] for tp in to_commit}, self.topic_ids),
                    **({NEWEST_RECORD_KEY: str(newest)} if newest is not None else {}),
                    **({PROJECTION_HASH_KEY: self.projection} if self.projection is not None else {}),
                }
                log.info("commit.started", table=self.identifier, commit_id=commit_id, attempt=outcome.attempts)
                outcome.snapshot_id = self.payload.commit(table, written, properties)
                outcome.committed = new_offsets
                self.seen.update(new_offsets)
                outcome.newest_record_ms = newest
                outcome.seconds = time.monotonic() - started
                return outcome
            except CommitFailedException as exc:
                # Step 5: another writer moved the table; its offsets may change our verdicts.
                outcome.conflicts += 1
                log.info("commit.conflict", table=self.identifier, attempt=outcome.attempts, error=str(exc))
            except CommitStateUnknownException as exc:
                log.warning("commit.state_unknown", table=self.identifier, commit_id=commit_id, error=str(exc))
            except Cutover:
                raise  # not a failure of the commit: the service holds the table or adopts its projection
            except Exception as exc:
                fault = faults.permanent(exc)
                if fault is not None:  # refused credentials, a missing bucket: retrying cannot help
                    raise PermanentFault(self.identifier, fault.reason, fault.fix, str(exc)) from exc
                if not faults.is_transient(exc):
                    raise
                log.warning("commit.unavailable", table=self.identifier, attempt=outcome.attempts, error=str(exc))
            if time.monotonic() - started > self.retry.deadline_s:
                raise CommitError(f"{self.identifier}: no commit after {outcome.attempts} attempts")
            if outcome.conflicts > conflicts_before:
                # Another writer's commit landed: the catalog works, and a long wait only lets more commits
                # in ahead of ours (a loser of several races in a row would wait minutes). Outages back off.
                self._sleep(self.retry.backoff(min(outcome.conflicts, CONFLICT_BACKOFF_STEPS)))
            else:
                self._sleep(self.retry.backoff(outcome.attempts - outcome.conflicts))

    def _went_back(self, tp: TopicPartition, committed_next: int | None) -> bool:
        """The table's offset is below where this writer saw it: an `offsets reset` (or a rollback) asks
        for records this writer has read past. Trimming committers (dead letters, routed tables) follow
        the data table's fence instead: they commit first, or never seek."""
        seen = self.seen.get(tp)
        return (self.offset_column is None and seen is not None and committed_next is not None
                and committed_next < seen)

    def _landed(self, table: Table, commit_id: str, first_base: int | None) -> bool:
        """Whether a snapshot with our commit id is in the table: only those committed since the first
        attempt began are looked at (a walk of the whole ancestry grows with the table's history)."""
        return any(summary.get(COMMIT_ID_KEY) == commit_id for summary in snapshot_summaries(table, first_base))


def _topic_ids_property(
    group: str, recorded: Mapping[str, str], topics: set[str], read_from: Mapping[str, str]
) -> dict[str, str]:
    ids = topic_ids_to_record(recorded, topics, read_from)
    return {topic_ids_key(group): encode_topic_ids(ids)} if ids else {}


def _newest_record_ms(rows: pa.Table) -> int | None:
    """The newest Kafka timestamp among the rows (ms), for freshness: `tabletopic status` reads it back."""
    if TIMESTAMP_COLUMN not in rows.column_names or rows.num_rows == 0:
        return None
    newest = pc.max(rows[TIMESTAMP_COLUMN]).as_py()
    return None if newest is None else int(newest.timestamp() * 1000)


def write_data_files(table: Table, rows: pa.Table) -> list[DataFile]:
    """Write Parquet data files (with field ids) for `rows`, outside any transaction, so retries reuse them."""
    # pyiceberg 0.12's append does this inside its transaction; we need the files to outlive a
    # failed attempt, so we call its writer directly (catalog.pyiceberg_private).
    if rows.num_rows == 0:  # a batch of dead letters only: the snapshot moves the offsets, no file
        return []
    check_arrow_schema(table, rows.schema)
    return data_files_from_arrow(table, rows)


PYICEBERG_RETRIES = "commit.retry.num-retries"


def without_pyiceberg_retries(table: Table) -> Table:
    """`table` with pyiceberg's commit retry off for commits made through it, whatever the table's
    own `commit.retry.num-retries` says (that property also drives Spark's and Java's retries)."""
    if table.metadata.properties.get(PYICEBERG_RETRIES) == "0":
        return table
    properties = {**table.metadata.properties, PYICEBERG_RETRIES: "0"}
    metadata = table.metadata.model_copy(update={"properties": properties})
    return Table(table.name(), metadata, table.metadata_location, table.io, table.catalog)


def without_history(table: Table) -> Table:
    """`table` with only the snapshots its refs point at and no snapshot log: all a fast append reads.
    pyiceberg's transaction deep-copies the whole metadata each time it is read (18 times per append),
    so with the full history an append's cost grew with every snapshot kept. Nothing is lost: the
    catalog checks the requirements and applies the new snapshot to its own current metadata. The
    metadata log stays (bounded by `write.metadata.previous-versions-max`): pyiceberg deletes the old
    metadata files that the new log no longer names by comparing it with this one."""
    metadata = table.metadata
    heads = {ref.snapshot_id for ref in metadata.refs.values()}
    if len(metadata.snapshots) <= len(heads) and not metadata.snapshot_log:
        return table
    trimmed = metadata.model_copy(update={
        "snapshots": [s for s in metadata.snapshots if s.snapshot_id in heads], "snapshot_log": [],
    })
    return Table(table.name(), trimmed, table.metadata_location, table.io, table.catalog)


def for_our_commit(table: Table) -> Table:
    """`table` as every commit of ours hands it to pyiceberg: its retries off (our loops validate and
    retry) and only the snapshots its refs point at (all a snapshot producer reads)."""
    return without_pyiceberg_retries(without_history(table))


def append_files(table: Table, files: list[DataFile], properties: dict[str, str]) -> int | None:
    """One fast-append snapshot holding `files`, its base's state with `properties` over it; raises
    CommitFailedException if the table moved."""
    properties = over_state(table, properties)
    transaction = for_our_commit(table).transaction()
    with transaction.update_snapshot(snapshot_properties=properties).fast_append() as append:
        for data_file in files:
            append.append_data_file(data_file)
    committed = transaction.commit_transaction()
    snapshot = committed.current_snapshot()
    return snapshot.snapshot_id if snapshot else None
