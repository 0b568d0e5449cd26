"""Commits buffered rows to one Iceberg table under the exactly-once protocol (docs/architecture.md).

The committer owns its retry loop: pyiceberg's own retry is switched off for our commits
(`without_pyiceberg_retries`) because it re-applies an append on a new base without the
offset check below. The table's property is left alone, so other engines keep their retries.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import structlog
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException, CommitStateUnknownException
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table

from tabletopic.commit.buffer import PartitionBuffer
from tabletopic.commit.offsets import (
    COMMIT_ID_KEY,
    WRITER_ID_KEY,
    OffsetMap,
    TopicPartition,
    Verdict,
    committed_offsets,
    encode_offsets,
    judge,
    merge_offsets,
    offsets_key,
)
from tabletopic.commit.retry import RetryPolicy
from tabletopic.decode.conform import conform_table
from tabletopic.exceptions import CommitError

log = structlog.get_logger(__name__)

NEWEST_RECORD_KEY = "tabletopic.newest-record-ms"
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
    conflicts: int = 0  # attempts that met another writer's snapshot
    newest_record_ms: int | None = None
    seconds: float = 0.0


def snapshot_summaries(table: Table) -> Iterator[dict[str, str | None]]:
    """Summaries of the current snapshot and its ancestors, newest first."""
    snapshot = table.current_snapshot()
    while snapshot is not None:
        summary = snapshot.summary
        yield {} if summary is None else dict(summary.additional_properties)
        snapshot = table.snapshot_by_id(snapshot.parent_snapshot_id) if snapshot.parent_snapshot_id else None


def table_offsets(table: Table, group: str) -> OffsetMap:
    return committed_offsets(snapshot_summaries(table), group)


def table_newest_record_ms(table: Table) -> int | None:
    """The newest Kafka timestamp the table's commits have recorded (ms), if any."""
    for summary in snapshot_summaries(table):
        newest = summary.get(NEWEST_RECORD_KEY)
        if newest:
            return int(newest)
    return None


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
    ) -> None:
        """With `offset_column`, a batch the table partly holds is trimmed to what it lacks instead
        of fenced: for dead letters, whose rows each carry their offset and whose table may run
        ahead of the data table's (it commits first)."""
        self.catalog = catalog
        self.identifier = identifier
        self.group = group
        self.writer_id = writer_id
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self.offset_column = offset_column

    def load(self) -> Table:
        return self.catalog.load_table(self.identifier)

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
        written_for: frozenset[tuple[TopicPartition, int, int]] | None = None
        newest: int | None = None
        files: list[DataFile] = []
        started = time.monotonic()
        while True:
            outcome.attempts += 1
            try:
                # Step 1.
                table = self.load()
                if outcome.attempts > 1 and self._landed(table, commit_id):
                    return outcome
                committed = table_offsets(table, self.group)
                # Step 2.
                outcome.replayed, outcome.fenced, to_commit = {}, {}, {}
                for tp, held in parts.items():
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
                if not to_commit:
                    outcome.committed = {}
                    return outcome
                # Step 3.
                ranges = frozenset((tp, held.first, held.last) for tp, held in to_commit.items())
                if written_for != ranges:
                    rows = pa.concat_tables([held.rows() for held in to_commit.values()])
                    # Another writer may have evolved the table since these rows were decoded.
                    rows = conform_table(rows, table.schema().as_arrow())
                    files = write_data_files(table, rows)
                    written_for = ranges
                    outcome.rows, outcome.files = rows.num_rows, len(files)
                    outcome.nbytes = sum(f.file_size_in_bytes for f in files)
                    newest = _newest_record_ms(rows)
                # Step 4.
                new_offsets = {tp: held.last + 1 for tp, held in to_commit.items()}
                properties = {
                    offsets_key(self.group): encode_offsets(merge_offsets(committed, new_offsets)),
                    COMMIT_ID_KEY: commit_id,
                    WRITER_ID_KEY: self.writer_id,
                    **({NEWEST_RECORD_KEY: str(newest)} if newest is not None else {}),
                }
                log.info("commit.started", table=self.identifier, commit_id=commit_id, attempt=outcome.attempts)
                outcome.snapshot_id = append_files(table, files, properties)
                outcome.committed = new_offsets
                outcome.newest_record_ms = newest
                outcome.seconds = time.monotonic() - started
                return outcome
            except CommitFailedException as exc:
                # Step 5: another writer moved the table; its offsets may change our verdicts.
                outcome.conflicts += 1
                log.info("commit.conflict", table=self.identifier, attempt=outcome.attempts, error=str(exc))
            except CommitStateUnknownException as exc:
                log.warning("commit.state_unknown", table=self.identifier, commit_id=commit_id, error=str(exc))
            except (OSError, ConnectionError, TimeoutError) as exc:
                log.warning("commit.unavailable", table=self.identifier, attempt=outcome.attempts, error=str(exc))
            except Exception as exc:
                if not _is_transient(exc):
                    raise
                log.warning("commit.unavailable", table=self.identifier, attempt=outcome.attempts, error=str(exc))
            if time.monotonic() - started > self.retry.deadline_s:
                raise CommitError(f"{self.identifier}: no commit after {outcome.attempts} attempts")
            self._sleep(self.retry.backoff(outcome.attempts))

    def _landed(self, table: Table, commit_id: str) -> bool:
        return any(summary.get(COMMIT_ID_KEY) == commit_id for summary in snapshot_summaries(table))


def _newest_record_ms(rows: pa.Table) -> int | None:
    """The newest Kafka timestamp among the rows (ms), for freshness: `tabletopic status` reads it back."""
    if TIMESTAMP_COLUMN not in rows.column_names or rows.num_rows == 0:
        return None
    newest = pc.max(rows[TIMESTAMP_COLUMN]).as_py()
    return None if newest is None else int(newest.timestamp() * 1000)


def _is_transient(exc: Exception) -> bool:
    """Errors of catalogs and object stores that a later attempt may not meet."""
    name = type(exc).__name__
    module = type(exc).__module__
    transient_names = {"OperationalError", "EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError",
                       "ServiceUnavailableError", "ServerError", "ClientOSError", "ServerDisconnectedError"}
    return name in transient_names or module.startswith(("botocore", "aiobotocore", "aiohttp"))


def write_data_files(table: Table, rows: pa.Table) -> list[DataFile]:
    """Write Parquet data files (with field ids) for `rows`, outside any transaction, so retries reuse them."""
    # pyiceberg 0.12's append does this inside its transaction; we need the files to outlive a
    # failed attempt, so we call its writer directly (the version is pinned).
    from pyiceberg.io.pyarrow import _check_pyarrow_schema_compatible, _dataframe_to_data_files

    if rows.num_rows == 0:  # a batch of dead letters only: the snapshot moves the offsets, no file
        return []
    _check_pyarrow_schema_compatible(table.schema(), rows.schema, format_version=table.format_version)
    return list(_dataframe_to_data_files(table_metadata=table.metadata, df=rows, io=table.io))


PYICEBERG_RETRIES = "commit.retry.num-retries"


def without_pyiceberg_retries(table: Table) -> Table:
    """`table` with pyiceberg's commit retry off for commits made through it, whatever the table's
    own `commit.retry.num-retries` says (that property also drives Spark's and Java's retries)."""
    if table.metadata.properties.get(PYICEBERG_RETRIES) == "0":
        return table
    properties = {**table.metadata.properties, PYICEBERG_RETRIES: "0"}
    metadata = table.metadata.model_copy(update={"properties": properties})
    return Table(table.name(), metadata, table.metadata_location, table.io, table.catalog)


def append_files(table: Table, files: list[DataFile], properties: dict[str, str]) -> int | None:
    """One fast-append snapshot holding `files`; raises CommitFailedException if the table moved."""
    transaction = without_pyiceberg_retries(table).transaction()
    with transaction.update_snapshot(snapshot_properties=properties).fast_append() as append:
        for data_file in files:
            append.append_data_file(data_file)
    committed = transaction.commit_transaction()
    snapshot = committed.current_snapshot()
    return snapshot.snapshot_id if snapshot else None
