"""`tabletopic rebuild --table NS.T`: NS.T__rebuild built from the log under the config's projection,
beside the live writer, then the cutover (docs/rebuild.md).

The rebuild writes NS.T__rebuild under the live writer's own offsets key (the config's group), by the
same protocol, so a rebuild killed at any point resumes from that table, and after the swap the live
writer goes on from the offsets the rebuilt table carries. It reads the log to its end, again and
again, until it has read every partition as far as the live table holds it; then the cutover freezes
the live table (its offsets stop at F), reads on to F, commits, and swaps the names (cutover.py).
"""

from __future__ import annotations

import dataclasses
import sys
import time
import uuid
from dataclasses import dataclass

import structlog
from pyiceberg.catalog import Catalog
from pyiceberg.table import Table

from tabletopic.catalog.projection import (
    FROZEN_KEY,
    PROJECTION_HASH_KEY,
    encode_freeze,
    encode_projection,
    hash_of,
)
from tabletopic.catalog.tables import load_if_exists
from tabletopic.commit.committer import append_files, snapshot_summaries, table_offsets
from tabletopic.commit.offsets import OffsetMap, encode_offsets, merge_offsets, offsets_key
from tabletopic.config import Config, TableConfig
from tabletopic.core import failpoints, metadata, throttle
from tabletopic.core.backoff import RetryPolicy
from tabletopic.decode.avro import WriterSchemas
from tabletopic.exceptions import ConfigError, RecordError
from tabletopic.kafka.reader import RangeReader, log_bounds, offsets_at, topic_settings
from tabletopic.observe import metrics
from tabletopic.rebuild import cutover, seed
from tabletopic.rebuild.cutover import SwapRefused
from tabletopic.rebuild.plan import (
    SWAP_SUFFIX,
    Journal,
    behind,
    caught_up,
    dlq_name,
    eta_seconds,
    offsets_from_text,
    offsets_text,
    previous_name,
    rebuild_name,
    swap_moves,
)
from tabletopic.sink import TableSink

log = structlog.get_logger(__name__)

LEASE_TTL_S = 30.0
LEASE_RENEW_S = 10.0
LIVE_REFRESH_S = 2.0  # how often the live table's offsets are read while building
PROGRESS_EVERY_S = 5.0
READ_TIMEOUT_S = 0.5
# The cutover must have read up to the frozen offsets this long before its freeze lapses, or it lets go.
FREEZE_MARGIN_S = 15.0


@dataclass(frozen=True)
class RebuildRequest:
    table: str
    from_timestamp_ms: int | None = None  # None: from the log's start
    max_records_per_second: float | None = None
    freeze_seconds: float = 120.0
    cutover: bool = True  # False: stop once caught up, the live table untouched
    seed_from_table: bool = False  # the live table's rows below the log start re-projected (rebuild/seed.py)


def live_spec(config: Config, table: str) -> TableConfig:
    """The table's settings in the config: the new version's projection, and how the table is fed."""
    spec = next((t for t in config.tables if t.table == table), None)
    if spec is None:
        raise ConfigError("--table", f"{table} is not a table of the config; a rebuild builds it under the "
                                     f"config's settings for it (the new version's config: --config NEW.yaml)")
    if spec.topic_pattern or spec.route_field or len(spec.all_topics) != 1:
        raise ConfigError("--table", f"{table}: a rebuild reads one topic into one table; a topic_pattern table, a "
                                     f"routed table or a table of several topics is not rebuilt yet")
    return spec


def rebuild(catalog: Catalog, config: Config, request: RebuildRequest, writer_schemas: WriterSchemas | None) -> str:
    """Build, then cut over (or complete a swap a killed run began); returns what was done, one line."""
    spec = live_spec(config, request.table)
    table = request.table
    pending = cutover.pending_journal(catalog, [table, rebuild_name(table), previous_name(table), table + SWAP_SUFFIX])
    if pending is not None:
        holder, journal = pending
        if complete_swap(catalog, config.group_id, table, holder, journal, request.freeze_seconds):
            return f"completed the swap {journal.cutover} a killed run began: {table} is the new version"
    live = load_if_exists(catalog, table)
    if live is None:
        raise ConfigError("--table", f"{table} does not exist: there is nothing to rebuild (run the writer)")
    taken = [name for name in (previous_name(table), dlq_name(previous_name(table)), table + SWAP_SUFFIX)
             if load_if_exists(catalog, name) is not None]
    if taken:
        raise SwapRefused(f"{', '.join(taken)} exists: the cutover would move {table} there. Drop the previous "
                          f"version first (tabletopic rebuild --drop-previous --table {table})")
    if not table_offsets(live, config.group_id):
        raise ConfigError("--table", f"{table} holds no offsets under the group {config.group_id!r}: give the live "
                                     f"writer's group_id in the config (the rebuilt table goes on under it)")
    owner = f"rebuild-{uuid.uuid4().hex[:8]}"
    cutover.take_lease(catalog, table, owner, LEASE_TTL_S)
    try:
        return Build(catalog, config, spec, request, writer_schemas, owner).run()
    finally:
        for name in (table, previous_name(table)):
            cutover.drop_lease(catalog, name, owner)


def complete_swap(catalog: Catalog, group: str, table: str, holder: str, journal: Journal,
                  freeze_seconds: float) -> bool:
    """A swap a killed run journaled: completed, or (when nothing was renamed yet and the live writer went
    on past the frozen offsets after the freeze lapsed) abandoned, the rebuild to go on. True: completed."""
    first = journal.moves[0]
    if not cutover.renamed_any(catalog, journal):
        frozen_at = offsets_from_text(journal.frozen_at)
        # Frozen again before any rename (the freeze may have lapsed): no writer commits while the names move,
        # unless one already went on past the frozen offsets, which makes the journal stale.
        cutover.freeze_dead_letters(catalog, table, group, journal.cutover, time.time() + freeze_seconds)
        again = cutover.freeze(catalog, first.source, group, journal.cutover, time.time() + freeze_seconds)
        if {tp: again.get(tp) for tp in frozen_at} != frozen_at:
            log.warning("cutover.abandoned", table=table, cutover=journal.cutover,
                        why="the freeze lapsed and the live writer went on: the rebuild catches up again")
            cutover.drop_journal(catalog, table, holder, journal)
            return False
    # The incoming table too: a writer that adopted it must not make a dead-letter table where its goes.
    cutover.set_properties(catalog, holder, {FROZEN_KEY: encode_freeze(journal.cutover, time.time() + freeze_seconds)})
    outgoing_to = next(m.target for m in reversed(journal.moves) if m.uuid == first.uuid)
    cutover.apply_moves(catalog, journal.moves)
    cutover.finish(catalog, table, outgoing_to, journal)
    log.info("cutover.completed", table=table, cutover=journal.cutover)
    return True


class Build:
    def __init__(self, catalog: Catalog, config: Config, spec: TableConfig, request: RebuildRequest,
                 writer_schemas: WriterSchemas | None, owner: str) -> None:
        self.catalog = catalog
        self.config = config
        self.request = request
        self.live_name = request.table
        self.group = config.group_id
        self.owner = owner
        self.topic = spec.all_topics[0]
        # Operated as a backfill is: no dead-letter rate limit (it would stop a replay of old floods).
        self.spec = dataclasses.replace(spec, table=rebuild_name(request.table), max_dead_letters_per_minute=None,
                                        dead_letter_topic=None)
        existing = load_if_exists(catalog, self.spec.table)
        if existing is not None:
            self._check_same_projection(existing)
        # In a folder of its own: after the swap its name is reused, and a table keeps its folder when renamed.
        self.location = cutover.unique_location(catalog.load_table(self.live_name), self.spec.table)
        self.sink = TableSink(self.spec, catalog, self.group, owner, RetryPolicy(), writer_schemas,
                              location=self.location)
        self.starts = self._starts(existing)
        self.read_to: dict[int, int] = dict(self.starts)
        self.read = 0

    # --- where it starts ------------------------------------------------------------------------

    def _check_same_projection(self, existing: Table) -> None:
        made_under = next((s[PROJECTION_HASH_KEY] for s in snapshot_summaries(existing) if s.get(PROJECTION_HASH_KEY)),
                          None)
        if made_under is not None and made_under != hash_of(self.spec):
            raise SwapRefused(f"{self.spec.table} was built under other settings (projection {made_under}, the "
                              f"config gives {hash_of(self.spec)}); resuming would mix them. Drop it first: "
                              f"tabletopic rebuild --abandon --table {self.live_name}")

    def _starts(self, existing: Table | None) -> dict[int, int]:
        bounds = log_bounds(self.config.kafka, self.topic)
        if not bounds:
            raise ConfigError("--table", f"topic {self.topic!r} of {self.live_name} not found")
        own = table_offsets(existing, self.group) if existing is not None else {}
        self._check_not_compacted()
        if self.request.from_timestamp_ms is not None and self.request.seed_from_table:
            raise ConfigError("--seed-from-table", "a rebuild --from-timestamp starts the new version at a time; "
                                                   "--seed-from-table fills in what the log lost below its start: "
                                                   "give one of them")
        if self.request.from_timestamp_ms is not None:
            fresh = offsets_at(self.config.kafka, self.topic, sorted(bounds), self.request.from_timestamp_ms)
        else:
            fresh = {p: low for p, (low, _) in bounds.items()}
            if not own:  # started afresh: a resumed rebuild (seeded or not) holds its offsets already
                self._check_retention({p: low for p, (low, _) in bounds.items()})
        starts = {p: own.get((self.topic, p), fresh[p]) for p in bounds}
        log.info("rebuild.starts", table=self.spec.table, resumed=bool(own),
                 offsets={f"{self.topic}/{p}": n for p, n in sorted(starts.items())})
        return starts

    def _check_not_compacted(self) -> None:
        """A compacted topic keeps only each key's last record: an upsert table keyed by the Kafka key is
        rebuilt whole from it, an append table (or one keyed by value columns) would lose its older rows."""
        policy = topic_settings(self.config.kafka, self.topic).get("cleanup.policy", "delete")
        if "compact" not in policy:
            return
        upsert = self.spec.upsert
        if upsert is not None and upsert.key_source == "kafka-key":
            return
        raise SwapRefused(f"{self.topic} is compacted (cleanup.policy={policy}): its log holds only each key's last "
                          f"record, so {self.live_name} rebuilt from it would lack rows it holds. Only an upsert table "
                          f"keyed by the Kafka key is rebuilt from a compacted topic")

    def _check_retention(self, log_start: dict[int, int]) -> None:
        """Refuse a rebuild whose log no longer holds rows the live table has (the new version would lack them),
        unless asked to seed them from the live table: then they are, in one commit."""
        if not any(log_start.values()):
            return
        live = self.catalog.load_table(self.live_name)
        short = {p: n for (t, p), n in table_offsets(live, self.group).items()
                 if t == self.topic and n < log_start.get(p, 0)}
        if short:  # the rebuild would start past records the live table never took: a loss no audit would show
            where = ", ".join(f"partition {p}: offsets {n}..{log_start[p] - 1}" for p, n in sorted(short.items()))
            raise SwapRefused(f"retention took records of {self.topic} that {self.live_name} never read ({where}); "
                              f"record that loss first with `tabletopic offsets reset` (the live writer is halted on "
                              f"it), then rebuild")
        if metadata.OFFSET not in {f.name for f in live.schema().fields}:
            raise SwapRefused(f"the log of {self.topic} starts above 0 and {self.live_name} has no {metadata.OFFSET} "
                              f"column to tell whether it holds older rows")
        if self.request.seed_from_table:
            seed.seed(self.catalog, self.live_name, self.sink, self.topic, log_start, self.location)
            return
        lost = seed.rows_below(live, self.topic, log_start)
        if lost:
            where = ", ".join(f"partition {p}: {n} rows below offset {log_start[p]}" for p, n in sorted(lost.items()))
            raise SwapRefused(f"the log of {self.topic} no longer holds all of {self.live_name}'s history ({where}); "
                              f"rebuilt from the log, the new version would lack those rows. Rebuild with "
                              f"--seed-from-table to re-project them from {self.live_name} (the log supplies the "
                              f"rest), or --from-timestamp a time the log still holds, if the new version may start "
                              f"there")

    # --- the loop -------------------------------------------------------------------------------

    def run(self) -> str:
        reader = RangeReader(self.config.kafka, self.topic, self.starts)
        pace = throttle.Throttle(self.request.max_records_per_second)
        progress = Progress(self.live_name)
        live = self._live_offsets()
        live_read_at = lease_at = time.monotonic()
        cut: str | None = None  # the cutover under way
        frozen_at: OffsetMap = {}
        deadline = 0.0
        try:
            while True:
                # Under a throttle, a batch is read only once the records so far are within the rate; never while
                # the live writer waits on a freeze.
                wait = pace.wait(self.read)
                if cut is not None:
                    wait = 0.0
                if wait:
                    time.sleep(min(wait, throttle.NAP_S))
                else:
                    self._read_once(reader)
                now = time.monotonic()
                if cut is None and now - live_read_at >= LIVE_REFRESH_S:
                    live, live_read_at = self._live_offsets(), now
                target = frozen_at if cut is not None else live
                progress.show(self.read, self._read_to(), target, now)
                if now - lease_at >= LEASE_RENEW_S:
                    cutover.take_lease(self.catalog, self.live_name, self.owner, LEASE_TTL_S)
                    lease_at = now
                commit = self.config.commit
                if self.sink.is_flush_due(now, commit.interval_seconds, commit.max_buffer_bytes):
                    self._flush()
                if cut is None and caught_up(self._read_to(), live):
                    if not self.request.cutover:
                        self._flush()
                        return f"{self.spec.table} has caught up with {self.live_name} ({self.read} records read)"
                    cut = uuid.uuid4().hex[:12]
                    deadline = now + self.request.freeze_seconds - FREEZE_MARGIN_S
                    frozen_at = self._freeze(cut)
                elif cut is not None and now <= deadline and caught_up(self._read_to(), frozen_at):
                    if self._swap(cut, frozen_at):
                        return f"{self.live_name} is the new version; the old one is {previous_name(self.live_name)}"
                    cut = None  # the live writer went on: catch up again
                elif cut is not None and now > deadline:
                    log.warning("cutover.let_go", table=self.live_name, cutover=cut,
                                why="the rebuild did not reach the frozen offsets in time: the live writer goes on")
                    self._unfreeze(cut)
                    cut = None
        except BaseException:
            if cut is not None:  # never leave the live writer frozen for a cutover that will not come
                self._unfreeze(cut)
            raise
        finally:
            reader.close()

    def _live_offsets(self) -> OffsetMap:
        """The live table's offsets in the rebuild's topic (a topic it no longer reads is not waited for)."""
        return self._of_topic(table_offsets(self.catalog.load_table(self.live_name), self.group))

    def _read_to(self) -> OffsetMap:
        return {(self.topic, p): n for p, n in self.read_to.items()}

    def _read_once(self, reader: RangeReader) -> None:
        batch = reader.read(self.config.consumer.batch_size, READ_TIMEOUT_S)
        for error in batch.errors:
            log.warning("kafka.error", error=error)
        if batch.out_of_range:  # never a retry that spins: retention took what the rebuild was to read next
            where = ", ".join(f"{self.topic}/{p} at {self.read_to.get(p)}" for p in sorted(set(batch.out_of_range)))
            raise SwapRefused(f"the log no longer holds the offsets the rebuild reads next ({where}): retention "
                              f"took them. Start again: --abandon, then rebuild with --seed-from-table")
        now = time.monotonic()
        for chunk in batch.chunks:
            try:
                self.sink.ingest(chunk, now)
            except RecordError:
                self._flush()  # the good records before it are kept; a rerun goes on from there
                raise
            self.read += len(chunk)
            self.read_to[chunk.partition] = max(self.read_to.get(chunk.partition, 0), chunk.last + 1)
        for partition, position in {**reader.positions(sorted(self.read_to)), **batch.reached}.items():
            self.read_to[partition] = max(self.read_to.get(partition, 0), position)

    def _flush(self) -> None:
        outcome = self.sink.flush()
        if outcome is not None and (outcome.fenced or outcome.replayed):
            raise SwapRefused(f"another process wrote {self.spec.table} meanwhile (a second rebuild?): this one stops")

    # --- the cutover ----------------------------------------------------------------------------

    def _freeze(self, cut: str) -> OffsetMap:
        until = time.time() + self.request.freeze_seconds
        cutover.freeze_dead_letters(self.catalog, self.live_name, self.group, cut, until)
        frozen_at = self._of_topic(cutover.freeze(self.catalog, self.live_name, self.group, cut, until))
        log.info("cutover.started", table=self.live_name, cutover=cut, frozen_at=offsets_text(frozen_at))
        failpoints.reached("cutover.frozen")
        return frozen_at

    def _of_topic(self, offsets: OffsetMap) -> OffsetMap:
        return {tp: n for tp, n in offsets.items() if tp[0] == self.topic}

    def _swap(self, cut: str, frozen_at: OffsetMap) -> bool:
        """Commit up to the frozen offsets, then swap; False when the live writer went on (the freeze lapsed)."""
        name = self.spec.table
        live = self.live_name
        try:
            self._flush()
            rebuilt = load_if_exists(self.catalog, name)
            if rebuilt is None:
                raise SwapRefused(f"{name} was never made: the log held no record to build it from")
            self._cover(rebuilt, frozen_at)
            if load_if_exists(self.catalog, dlq_name(name)) is None:  # after the swap NS.T__dlq always exists
                cutover.make_dead_letter_table(self.catalog, dlq_name(name), rebuilt)
            # Frozen anew for the renames: unless the live writer got in while the first freeze lapsed.
            until = time.time() + self.request.freeze_seconds
            cutover.freeze_dead_letters(self.catalog, live, self.group, cut, until)
            if self._of_topic(cutover.freeze(self.catalog, live, self.group, cut, until)) != frozen_at:
                log.warning("cutover.let_go", table=live, cutover=cut, why="the live writer committed past the "
                            "frozen offsets (the freeze lapsed): the rebuild catches up again")
                self._unfreeze(cut)
                return False
        except BaseException:
            self._unfreeze(cut)  # never leave the live writer frozen for a swap that will not come
            raise
        moves = swap_moves(live, name, previous_name(live),
                           cutover.uuids(self.catalog, [live, dlq_name(live), name, dlq_name(name)]))
        journal = Journal(cut, moves, offsets_text(frozen_at))
        cutover.stamp(self.catalog, name, encode_projection(self.spec), journal,
                      time.time() + self.request.freeze_seconds)
        failpoints.reached("cutover.stamped")
        cutover.apply_moves(self.catalog, moves)
        cutover.finish(self.catalog, live, previous_name(live), journal)
        log.info("cutover.done", table=live, cutover=cut, previous=previous_name(live), offsets=offsets_text(frozen_at))
        return True

    def _unfreeze(self, cut: str) -> None:
        for name in (self.live_name, dlq_name(self.live_name)):
            cutover.unfreeze(self.catalog, name, cut)

    def _cover(self, rebuilt: Table, frozen_at: OffsetMap) -> None:
        """Every partition the live table holds, the rebuilt one holds at least as far: where the last
        offsets read held no record (a transaction marker, a compacted record, nothing from the start
        time on), an empty snapshot records where the rebuild has read to."""
        own = table_offsets(rebuilt, self.group)
        read_to = self._read_to()
        marks = {tp: read_to[tp] for tp, n in frozen_at.items() if own.get(tp, -1) < n}
        if not marks:
            return
        append_files(rebuilt, [], {offsets_key(self.group): encode_offsets(merge_offsets(own, marks))})
        log.info("rebuild.offsets_covered", table=self.spec.table, offsets=offsets_text(marks))


class Progress:
    """A line on stderr and the metrics every few seconds: records read, how far behind, the time to catch up."""

    def __init__(self, table: str) -> None:
        self.table = table
        self._last: tuple[float, int, int] | None = None  # when, records read, behind
        self._rate_read = 0

    def show(self, read: int, read_to: OffsetMap, target: OffsetMap, now: float) -> None:
        if self._last is not None and now - self._last[0] < PROGRESS_EVERY_S:
            return
        gap = behind(read_to, target)
        if self._last is None:
            self._last = (now, read, gap)
            metrics.record_rebuild(self.table, gap, None, read)
            return
        when, read_before, gap_before = self._last
        seconds = now - when
        eta = eta_seconds(gap, gap_before, seconds)
        rate = (read - read_before) / seconds if seconds > 0 else 0.0
        metrics.record_rebuild(self.table, gap, eta, read - read_before)
        self._last = (now, read, gap)
        eta_text = "-" if eta is None else f"{eta:.0f}s"
        print(f"rebuild {self.table}: {read} records read ({rate:.0f}/s), {gap} behind the live table, "
              f"catch-up ETA {eta_text}", file=sys.stderr, flush=True)
        log.info("rebuild.progress", table=self.table, read=read, per_s=round(rate), behind=gap, eta_s=eta)
