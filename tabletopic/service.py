"""The service: one consumer-group member feeding one TableSink per table.

Its loop polls a batch, decodes and buffers it per table, and flushes a table when its commit
interval has passed or its buffer is full. Rebalances flush (revoke) or drop (lost) partitions,
and new partitions start where their table says. SIGTERM flushes, commits and leaves the group
within `shutdown_timeout_seconds`.

It reads through a GroupMember (kafka/interface.py; GroupConsumer against the broker, an in-memory
fake in tests/unit/test_service_loop.py). Where partitions start and the halt of a table whose
offsets the log cannot serve live in positions.py; every pause and resume goes through the gate.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import FrameType

import structlog
from pyiceberg.catalog import Catalog

from tabletopic.catalog.calls import CatalogCallFailed
from tabletopic.catalog.loader import open_catalog
from tabletopic.catalog.projection import Cutover, Handover, TableFrozen, as_recorded
from tabletopic.catalog.tables import load_if_exists
from tabletopic.commit import faults, gate
from tabletopic.commit.committer import CommitOutcome, table_offsets
from tabletopic.commit.offsets import OffsetMap, TopicPartition
from tabletopic.commit.pressure import should_pause, should_resume, table_backoff, tables_to_flush_early
from tabletopic.config import Config, TableConfig
from tabletopic.core.backoff import RetryPolicy
from tabletopic.core.exits import ExitCode
from tabletopic.core.records import RecordChunk
from tabletopic.core.stop_flag import StopFlag
from tabletopic.deadletter.flood import DeadLetterFlood
from tabletopic.deadletter.topic import DeadLetterTopic
from tabletopic.decode.avro import WriterSchemas
from tabletopic.exceptions import CommitError, ConfigError, PermanentFault, RecordError, SourceUnavailable
from tabletopic.kafka.consumer import GroupConsumer
from tabletopic.kafka.errors import KafkaException
from tabletopic.kafka.interface import GroupMember, RebalanceHandlers
from tabletopic.kafka.reader import topic_names
from tabletopic.kafka.registry import SchemaRegistry
from tabletopic.observe import metrics
from tabletopic.observe.watch import Watch
from tabletopic.positions import Positions
from tabletopic.resolver import Refusal, claim
from tabletopic.routing import route_values, split_by, subscription_pattern, table_for
from tabletopic.sink import TableSink

log = structlog.get_logger(__name__)

# How often a table halted by a fault no retry fixes (commit/faults.py) tries one commit again.
FAULT_RETRY_S = 60.0
# Listing the topics (to claim those a topic_pattern matches) runs inside a rebalance: it waits this long at
# most; topics left undecided meanwhile are claimed again after a backoff that grows up to CLAIM_RETRY_MAX_S.
LIST_TOPICS_TIMEOUT_S = 5.0
CLAIM_RETRY_MAX_S = 30.0
# How often a table a rebuild's cutover froze tries its commit again.
FROZEN_RETRY_S = 1.0
# How often the consumer's positions are asked for the offsets it passed without a record (a transaction's
# marker): once a second bounds the cost (some microseconds a partition) whatever the poll rate.
PASS_OVER_INTERVAL_S = 1.0


@dataclass
class TableHealth:
    failures: int = 0  # failed flushes in a row
    retry_at: float = 0.0  # monotonic time before which the table does not try again


def writer_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class Service:
    def __init__(self, config: Config, catalog: Catalog | None = None, consumer: GroupMember | None = None,
                 list_topics: Callable[[float], list[str]] | None = None,
                 clock: Callable[[], float] = time.monotonic, stopping: StopFlag | None = None) -> None:
        """`consumer` (default: a GroupConsumer on `config.kafka`), `list_topics` (every topic the cluster
        has, within a timeout) and `clock` are the loop's seams to the broker and to time. `stopping`: a flag
        made before the service (a stop asked while it opens its catalog and consumer is kept)."""
        self.config = config
        self._clock = clock
        self.writer_id = writer_id()
        self._stopping = stopping if stopping is not None else StopFlag()
        catalog = catalog or open_catalog(config.catalog)
        writer_schemas = (
            WriterSchemas(SchemaRegistry(config.schema_registry.url, config.schema_registry.properties))
            if config.schema_registry.url
            else None
        )
        self._catalog = catalog
        self._writer_schemas = writer_schemas
        self._retry = RetryPolicy(deadline_s=config.commit.retry_deadline_seconds)
        self.sinks: list[TableSink] = []
        self._sink_of_topic: dict[str, TableSink] = {}
        self._sink_named: dict[str, TableSink] = {}
        self._health: dict[str, TableHealth] = {}
        # Topic -> the id of the topic its assigned partitions are read from (as of their assignment or
        # last reposition): recorded with every commit, so a recreated topic is told apart from the old one.
        self._read_ids: dict[str, str] = {}
        # A topic whose records are split by a field: (field, table per value, the default table).
        self._routes: dict[str, tuple[str, dict[str, str], TableSink]] = {}
        for spec in config.tables:
            if spec.route_field is not None:
                self._add_routed(spec)
            elif spec.topic_pattern is None:
                self._add_sink(spec, spec.all_topics)
        self._patterns = [(re.compile(spec.topic_pattern), spec) for spec in config.tables if spec.topic_pattern]
        self.consumer: GroupMember = (consumer if consumer is not None
                                      else GroupConsumer(config.kafka, config.group_id, config.consumer.start))
        self._topic_names = list_topics or (lambda timeout_s: topic_names(config.kafka, timeout_s))
        self._watch = Watch(self.writer_id, self.consumer.log_end)
        # Every pause and resume goes through the gate: a partition runs when no reason holds it.
        self._gate = gate.PartitionGate()
        self._positions = Positions(self.consumer, catalog, config.group_id, self._gate, self.sinks, self._sinks_for,
                                    self._topics_of, self._read_ids, clock)
        self._held: dict[str, float] = {}  # table -> monotonic time its paused partitions resume
        self._unclaimed: set[str] = set()  # pattern topics left undecided: the topics could not be listed
        self._claim_failures = 0  # listings failed in a row
        self._claim_retry_at = 0.0
        self._frozen_by: dict[str, str] = {}  # table -> the cutover whose freeze was said
        self._repositioned: set[TopicPartition] = set()  # this poll's partitions read again from their table
        self._next_pass_over = 0.0

    def _add_sink(self, spec: TableConfig, topics: list[str], routed: bool = False) -> TableSink:
        sink = self._make_sink(spec, routed)
        self.sinks.append(sink)
        if not routed:
            self._sink_of_topic.update(dict.fromkeys(topics, sink))
        self._sink_named[sink.identifier] = sink
        self._health[sink.identifier] = TableHealth()
        return sink

    def _make_sink(self, spec: TableConfig, routed: bool) -> TableSink:
        spec = self._projected(spec)
        dead_letter_topic = (DeadLetterTopic(self.config.kafka, spec.dead_letter_topic, spec.table)
                             if spec.dead_letter_topic else None)
        sink = TableSink(spec, self._catalog, self.config.group_id, self.writer_id, self._retry, self._writer_schemas,
                         dead_letter_topic, routed=routed, clock=self._clock)
        sink.committer.topic_ids = self._read_ids
        return sink

    def _projected(self, spec: TableConfig) -> TableConfig:
        """`spec`, its rows made under the projection its table records (a rebuild's), if the table has one."""
        projected, differences = as_recorded(self._catalog, spec)
        if differences:
            log.warning("table.projection_from_table", table=spec.table, differences=differences,
                        why="the table was rebuilt under these settings (tabletopic rebuild): its rows are made so",
                        fix="put the table's settings in the config (`tabletopic rebuild --show --table T`)")
        return projected

    def _adopt_projection(self, old: TableSink, change: Handover) -> None:
        """A rebuild's cutover or rollback put another table in this one's place (maybe made under another
        projection): its sink is made again under the table's projection and its partitions read again from
        where the table stands (what the old sink buffered is dropped: it was read for the old table)."""
        new = self._make_sink(old.spec, old.routed)
        self.sinks[self.sinks.index(old)] = new
        self._sink_of_topic.update({t: new for t, each in self._sink_of_topic.items() if each is old})
        self._sink_named[new.identifier] = new
        self._routes.update({t: (field, tables, new) for t, (field, tables, default) in self._routes.items()
                             if default is old})
        mine = self._partitions_of(new)
        offsets: OffsetMap = {}
        for topic in sorted({t for t, _ in mine}):
            offsets.update(self._positions.starts_for(topic, [tp for tp in mine if tp[0] == topic]))
        self._positions.reposition(mine, offsets)
        self._repositioned.update(mine)  # the rest of this poll's chunks of them are stale
        self._frozen_by.pop(new.identifier, None)
        log.warning("table.projection_adopted", table=new.identifier, reason=str(change),
                    projection=new.committer.projection, offsets={f"{t}/{p}": n for (t, p), n in offsets.items()})

    def _hold_for_cutover(self, sink: TableSink, freeze: TableFrozen) -> None:
        """A rebuild's cutover froze the table: its commits wait (its rows stay buffered) until the cutover
        has swapped the table, or its freeze lapsed."""
        retry_at = self._clock() + FROZEN_RETRY_S
        self._health[sink.identifier].retry_at = retry_at
        self._held[sink.identifier] = retry_at
        self.consumer.pause(self._gate.close(gate.held(sink.identifier), self._topics_of(sink)))
        if self._frozen_by.get(sink.identifier) != freeze.by:
            self._frozen_by[sink.identifier] = freeze.by
            log.warning("table.frozen_for_cutover", table=sink.identifier, cutover=freeze.by, until=freeze.until)

    def _add_routed(self, spec: TableConfig) -> None:
        plain = dataclasses.replace(spec, route_field=None, route_tables={})
        default = self._add_sink(plain, [], routed=True)
        for target in sorted(set(spec.route_tables.values()) - {spec.table}):
            self._add_sink(dataclasses.replace(plain, table=target), [], routed=True)
        assert spec.route_field is not None
        for topic in spec.all_topics:
            self._routes[topic] = (spec.route_field, dict(spec.route_tables), default)

    def _sinks_for(self, topic: str) -> list[TableSink]:
        route = self._routes.get(topic)
        if route is not None:
            _, tables, default = route
            return [default, *(self._sink_named[t] for t in sorted(set(tables.values()) - {default.identifier}))]
        sink = self._sink_of_topic.get(topic)
        return [] if sink is None else [sink]

    def _feeds(self, sink: TableSink, topic: str) -> bool:
        return sink in self._sinks_for(topic)

    def _claim_new_topics(self, topics: list[str]) -> None:
        """Topics a `topic_pattern` matches join their tables, unless their table is another's (resolver.py):
        judged on every topic the cluster has, so each writer decides alike whatever it is assigned. When
        they cannot be listed, a topic the decision depends on stays paused, claimed again later."""
        matching = [t for t in topics if any(p.fullmatch(t) for p, _ in self._patterns)]
        if not matching:
            return
        listed = self._list_topics(matching)
        # Only these tables' owners matter here: one catalog read each, not one per pattern table.
        wanted = {table_for(next(spec for p, spec in self._patterns if p.fullmatch(t)).table, t) for t in matching}
        claims = claim(self.config, matching, None if listed is None else {*listed, *self._sink_of_topic},
                       lambda table: self._fed_by(table) if table in wanted else ())
        for refusal in claims.refused:
            self._refuse(refusal)
        for topic in claims.joined:
            self._sink_for_new_topic(topic)
        for topic in claims.undecided:  # never read meanwhile: no record is skipped, none read into a wrong table
            self.consumer.pause(self._gate.close(f"unclaimed:{topic}", [topic]))
        self._unclaimed.update(claims.undecided)
        self._start_claimed(claims.joined, [r.topic for r in claims.refused])

    def _list_topics(self, matching: list[str]) -> list[str] | None:
        """Every topic the cluster has, or None (said once per streak of failures, then retried with backoff)."""
        try:
            listed = self._topic_names(LIST_TOPICS_TIMEOUT_S)
        except KafkaException as exc:
            self._claim_failures += 1
            wait = min(CLAIM_RETRY_MAX_S, 2.0 ** (self._claim_failures - 1))
            self._claim_retry_at = self._clock() + wait
            if self._claim_failures == 1:
                log.warning("kafka.topics_unavailable", error=str(exc), topics=matching, retry_in_s=wait,
                            why="which topic keeps a table several topic names fold onto is decided on every "
                                "topic: those it depends on stay paused until the topics can be listed")
            return None
        if self._claim_failures:
            log.info("kafka.topics_listed", after_failures=self._claim_failures)
        self._claim_failures = 0
        return listed

    def _start_claimed(self, joined: tuple[str, ...], refused: list[str]) -> None:
        """Topics decided after some of their partitions were assigned undecided (paused, at the configured
        start): those joining a table read from where it stands, then the pause for the decision lifts."""
        decided = [t for t in (*joined, *refused) if t in self._unclaimed]
        self._unclaimed.difference_update(decided)
        earlier = sorted(tp for tp in self.consumer.assigned if tp[0] in joined and tp[0] in decided)
        topics = sorted({t for t, _ in earlier})
        current_ids = self._positions.current_ids(topics) if topics else {}
        for topic in topics:
            self._positions.set_read_id(topic, current_ids)
            mine = [tp for tp in earlier if tp[0] == topic]
            offsets = self._positions.starts_for(topic, mine)
            self._positions.check_topic(topic, mine, offsets, current_ids)
            self._positions.reposition(mine, offsets)
        for topic in decided:
            self.consumer.resume(self._gate.open(f"unclaimed:{topic}"))

    def _retry_claims(self, now: float) -> None:
        """Undecided topics still assigned here are claimed again once the backoff has passed."""
        if not self._unclaimed or now < self._claim_retry_at:
            return
        assigned = {t for t, _ in self.consumer.assigned}
        for gone in sorted(self._unclaimed - assigned):  # decided again if assigned again
            self._unclaimed.discard(gone)
            self._gate.open(f"unclaimed:{gone}")
        self._claim_new_topics(sorted(self._unclaimed))

    def _fed_by(self, table: str) -> set[str]:
        """The topics a table already takes: those its committed offsets name, and those this writer feeds it."""
        sink = self._sink_named.get(table)
        mine = {t for t, each in self._sink_of_topic.items() if each is sink} if sink is not None else set()
        found = load_if_exists(self._catalog, table)
        return mine | ({t for t, _ in table_offsets(found, self.config.group_id)} if found is not None else set())

    def _refuse(self, refusal: Refusal) -> None:
        """A refused topic's partitions stay paused while this writer runs (said once)."""
        reason = f"refused:{refusal.topic}"
        if not self._gate.stands(reason):
            log.warning("topic.refused", topic=refusal.topic, table=refusal.table, reason=refusal.reason,
                        table_fed_by=refusal.owner, fix="rename the topic, or give it a table of its own in the config")
        self.consumer.pause(self._gate.close(reason, [refusal.topic]))

    def _sink_for_new_topic(self, topic: str) -> None:
        """A topic that matched a `topic_pattern`: its table (named from the template) joins the tables."""
        for pattern, spec in self._patterns:
            if pattern.fullmatch(topic):
                table = table_for(spec.table, topic)
                existing = self._sink_named.get(table)
                if existing is not None:
                    self._sink_of_topic[topic] = existing
                    for reason in (gate.held(table), gate.halted(table)):
                        if self._gate.stands(reason):  # the table's pause covers its new topic too
                            self._gate.close(reason, [topic])
                else:
                    self._add_sink(dataclasses.replace(spec, table=table, topic=topic, topic_pattern=None), [topic])
                log.info("topic.routed", topic=topic, table=table, pattern=pattern.pattern)
                return

    # --- lifecycle -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish; safe from a signal handler or another thread."""
        self._stopping.set()

    def install_signal_handlers(self) -> None:
        def handle(signum: int, _frame: FrameType | None) -> None:
            # No logging here: the handler runs between two bytecodes of the main thread, which may be
            # inside the log writer's lock already (a deadlock: the writer never stopped, seen in tests).
            self._stopping.set(signal.Signals(signum).name)

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def run(self) -> int:
        """Poll, buffer, flush until stopped or a bad record; returns the process exit code."""
        log.info(
            "service.started",
            writer_id=self.writer_id,
            group=self.config.group_id,
            tables={s.identifier: s.spec.all_topics for s in self.sinks},
        )
        self.consumer.subscribe(
            [*self._sink_of_topic, *self._routes, *(subscription_pattern(p.pattern) for p, _ in self._patterns)],
            RebalanceHandlers(start_offsets=self._start_offsets, revoked=self._on_revoked, lost=self._on_lost,
                              hold=self._hold_on_assign),
        )
        try:
            code = self._loop()
        except ConfigError as exc:  # a table that the config does not fit, found once its records came
            log.error("config.invalid", key=exc.key, reason=exc.reason)
            self.consumer.close()
            return ExitCode.CONFIG
        except Exception:
            log.exception("service.crashed")
            self.consumer.close()
            return ExitCode.CRASHED
        return self._shutdown(code)

    def _loop(self) -> int:
        settings = self.config.consumer
        commit = self.config.commit
        while not self._stopping.requested:
            chunks = self.consumer.poll(settings.batch_size, settings.poll_timeout_seconds)
            now = self._clock()
            failure: RecordError | None = None
            self._repositioned.clear()
            for chunk in chunks:
                if (chunk.topic, chunk.partition) in self._repositioned:
                    continue  # fetched before its table was swapped: read again from the new table's offsets
                targets = self._sinks_for(chunk.topic)
                if any(sink.identifier in self._held or sink.identifier in self._positions.halted for sink in targets):
                    self.consumer.seek((chunk.topic, chunk.partition), chunk.first)  # fetched before the hold
                    continue
                for sink, part in self._shares(chunk):
                    metrics.record_consumed(sink.identifier, len(part), sum(map(len, filter(None, part.values))))
                    try:
                        sink.ingest(part, now, (chunk.first, chunk.last) if sink.routed else None)
                    except RecordError as exc:
                        # Other partitions' records in this batch are good: keep going, then stop.
                        failure = failure or exc
                    except Exception as exc:  # a service the records or the table need (registry, catalog, store)
                        if not self._on_ingest_fault(sink, chunk, exc, now):
                            raise
                        break  # the chunk is read again: its routed siblings must not take it now
            if failure is not None:
                log.error(
                    "record.bad", topic=failure.topic, partition=failure.partition, offset=failure.offset,
                    reason=failure.reason,
                )
                return ExitCode.BAD_RECORD
            if self.consumer.authentication_error is not None:
                log.error("kafka.authentication_failed", error=self.consumer.authentication_error,
                          fix="check kafka.sasl.username / sasl.password (or the files and variables they name)")
                return ExitCode.CONFIG
            if self.consumer.out_of_range:
                self._on_out_of_range()
            self._pass_over_empty_offsets(now)
            for sink in self.sinks:
                interval = sink.spec.commit_interval_seconds or commit.interval_seconds
                if sink.is_flush_due(now, interval, commit.max_buffer_bytes):
                    self._try_flush(sink, now)
            self._release_holds(now)
            self._positions.recheck_halted(now)
            self._retry_claims(now)
            self._relieve_memory(now)
            self._watch.turn(now, self.sinks, self._partitions_of)
        return ExitCode.OK

    def _pass_over_empty_offsets(self, now: float) -> None:
        """Offsets the consumer passed without a record (transaction markers, aborted transactions, compacted
        gaps) join each running table's range, so its offsets reach the consumer's position: no lag of one
        left behind the last commit marker. A paused partition, or one whose table is held or halted, waits
        (what it fetched was put back or dropped; a seek leaves its position unknown until it reads again)."""
        if now < self._next_pass_over:
            return
        self._next_pass_over = now + PASS_OVER_INTERVAL_S
        running = sorted(tp for tp in self.consumer.assigned if not self._gate.is_paused(tp))
        if not running:
            return
        for tp, position in self.consumer.consumed_to(running).items():
            for sink in self._sinks_for(tp[0]):
                if sink.identifier not in self._held and sink.identifier not in self._positions.halted:
                    sink.pass_over(tp, position, now)

    def _shares(self, chunk: RecordChunk) -> list[tuple[TableSink, RecordChunk]]:
        """The chunk for its table, or, for a routed topic, each table's share (empty ones too)."""
        route = self._routes.get(chunk.topic)
        if route is None:
            sink = self._sink_of_topic.get(chunk.topic)
            return [] if sink is None else [(sink, chunk)]  # none: a refused topic
        field, tables, default = route
        groups = split_by(route_values(chunk.values, field), tables, default.identifier)
        return [(sink, chunk.select(groups.get(sink.identifier, []))) for sink in self._sinks_for(chunk.topic)]

    def _partitions_of(self, sink: TableSink) -> list[TopicPartition]:
        return self._positions.partitions_of(sink)

    def _hold(self, sink: TableSink, chunk: RecordChunk, exc: Exception, now: float) -> None:
        """A service the table's records need is down: the table paused, its chunk to be read again later."""
        health = self._health[sink.identifier]
        health.failures += 1
        wait = table_backoff(health.failures)
        self._held[sink.identifier] = now + wait
        self.consumer.pause(self._gate.close(gate.held(sink.identifier), self._topics_of(sink)))
        log.warning("table.source_unavailable", table=sink.identifier, retry_in_s=wait, failures=health.failures,
                    partition=f"{chunk.topic}/{chunk.partition}", offset=chunk.first, error=str(exc))

    def _on_ingest_fault(self, sink: TableSink, chunk: RecordChunk, exc: Exception, now: float) -> bool:
        """A service down while decoding (the registry) or a fault of the catalog or the object store while
        creating or evolving the table: the chunk is read again later, the table halted (a fault no retry
        fixes) or held with backoff (an outage). False when the error is neither: a bug, which crashes
        the worker."""
        if isinstance(exc, DeadLetterFlood):
            self._on_dead_letter_flood(sink, chunk, exc)
            return True
        if isinstance(exc, Handover):
            self._adopt_projection(sink, exc)
            return True
        if isinstance(exc, TableFrozen):  # a table created during a cutover's renames: read again later
            self._read_again(chunk, chunk.first)
            self._hold_for_cutover(sink, exc)
            return True
        registry_outage = isinstance(exc, SourceUnavailable) and not isinstance(exc, CatalogCallFailed)
        fault = None if registry_outage else faults.permanent(exc)  # judged on its cause (`__cause__`) too
        # A failed catalog call, whatever it raised (catalog/calls.py), and a schema change that kept losing
        # races to other writers (CommitError) are retried like an outage: never a crash, never a dead letter.
        retried = registry_outage or isinstance(exc, (CatalogCallFailed, CommitError)) or faults.is_transient(exc)
        if fault is None and not retried:
            return False
        self._read_again(chunk, chunk.first)
        if fault is not None:
            self._halt_on_fault(sink, PermanentFault(sink.identifier, fault.reason, fault.fix, str(exc)))
        else:
            self._hold(sink, chunk, exc, now)
        return True

    def _read_again(self, chunk: RecordChunk, offset: int) -> None:
        """The chunk's partition read again from `offset`; for a routed topic, whose siblings before this table may
        have buffered their share of the chunk, all of them from where their tables stand."""
        tp = (chunk.topic, chunk.partition)
        if len(self._sinks_for(chunk.topic)) > 1:
            self._positions.reposition([tp], self._positions.starts_for(chunk.topic, [tp]))
        else:
            self.consumer.seek(tp, offset)

    def _on_dead_letter_flood(self, sink: TableSink, chunk: RecordChunk, flood: DeadLetterFlood) -> None:
        """More dead letters than the table's limit: it halts at the record past it (what came before is
        buffered), read again from there once it goes on."""
        self._read_again(chunk, flood.offset)
        self._halt_on_fault(sink, flood)

    def _release_holds(self, now: float) -> None:
        for name, until in list(self._held.items()):
            if now >= until:
                del self._held[name]
                self.consumer.resume(self._gate.open(gate.held(name)))
                log.info("table.retrying", table=name)

    def _try_flush(self, sink: TableSink, now: float) -> None:
        """Flush unless the table is backing off; a failure backs it off and leaves the others alone."""
        health = self._health[sink.identifier]
        if now < health.retry_at:
            return
        try:
            self._flush(sink)
        except PermanentFault as fault:
            self._halt_on_fault(sink, fault)
            return
        except TableFrozen as freeze:
            self._hold_for_cutover(sink, freeze)
            return
        except Handover as change:
            self._adopt_projection(sink, change)
            return
        except CommitError as exc:
            health.failures += 1
            health.retry_at = self._clock() + table_backoff(health.failures)
            log.error("table.commit_failed", table=sink.identifier, failures=health.failures,
                      retry_in_s=table_backoff(health.failures), buffered_bytes=sink.buffer.nbytes, error=str(exc))
            return
        if metrics.record_table_going(sink.identifier):
            log.info("table.fault_cleared", table=sink.identifier)
        if health.failures:
            log.info("table.recovered", table=sink.identifier, after_failures=health.failures)
        health.failures = 0

    # --- a fault no retry fixes (commit/faults.py) -----------------------------------------------

    def _halt_on_fault(self, sink: TableSink, fault: PermanentFault) -> None:
        """Refused credentials, a missing bucket: the table stops, its rows kept in its buffer and its
        partitions paused, while the other tables go on. One attempt every FAULT_RETRY_S lets it go on
        by itself once the fault is fixed, without a retry loop in between."""
        retry_at = self._clock() + FAULT_RETRY_S
        self._health[sink.identifier].retry_at = retry_at
        self._held[sink.identifier] = retry_at
        self.consumer.pause(self._gate.close(gate.held(sink.identifier), self._topics_of(sink)))
        metrics.record_table_halted(sink.identifier, fault.reason)
        log.error("table.halted", table=sink.identifier, reason=fault.reason, fix=fault.fix, error=fault.error,
                  retry_in_s=FAULT_RETRY_S, buffered_bytes=sink.buffer.nbytes)

    def _relieve_memory(self, now: float) -> None:
        """Keep buffered bytes under the process cap: flush early, else pause until commits catch up."""
        cap = self.config.commit.max_process_buffer_bytes
        sizes = {sink.identifier: sink.buffered_bytes for sink in self.sinks}  # dead letters count too
        if not self._gate.stands(gate.MEMORY):
            blocked = {name for name, health in self._health.items() if now < health.retry_at}
            for name in tables_to_flush_early(sizes, cap, blocked):
                self._try_flush(self._sink_named[name], now)
            sizes = {sink.identifier: sink.buffered_bytes for sink in self.sinks}
            if should_pause(sum(sizes.values()), cap):
                self.consumer.pause(self._gate.close(gate.MEMORY))
                log.warning("memory.paused", buffered_bytes=sum(sizes.values()), cap=cap)
        elif should_resume(sum(sizes.values()), cap):
            self.consumer.resume(self._gate.open(gate.MEMORY))
            log.info("memory.resumed", buffered_bytes=sum(sizes.values()), cap=cap)
        else:
            for sink in self.sinks:
                if sink.buffered_bytes:
                    self._try_flush(sink, now)

    def _shutdown(self, code: int) -> int:
        """Flush, commit and leave the group, or give up after the shutdown bound (the table stays consistent)."""
        if self._stopping.reason is not None:
            log.info("service.stopping", signal=self._stopping.reason)
        timeout = self.config.shutdown_timeout_seconds
        watchdog = threading.Timer(timeout, _exit_now, args=(timeout,))
        watchdog.daemon = True
        watchdog.start()
        try:
            if code in (ExitCode.OK, ExitCode.BAD_RECORD):  # the good records before a bad one are kept
                self._flush_all()
                # Lag tools read the group's offsets: leave them where the tables are, not a commit behind.
                held = {tp: n for sink in self.sinks if not sink.routed for tp, n in sink.committed.items()}
                self.consumer.commit_group_offsets(held, wait=True)
            self.consumer.close()
        except CommitError as exc:
            log.error("service.commit_failed", error=str(exc))
            code = ExitCode.COMMIT_FAILED
        finally:
            watchdog.cancel()
        log.info("service.stopped", exit_code=int(code))
        return code

    # --- flushing ------------------------------------------------------------------------------

    def _flush_all(self) -> None:
        for sink in self.sinks:
            try:
                self._flush(sink)
            except Cutover as exc:  # its records are read again from where the table (or its successor) stands
                log.warning("table.left_to_cutover", table=sink.identifier, reason=str(exc))

    def _flush(self, sink: TableSink, tps: list[TopicPartition] | None = None) -> None:
        if self._positions.recreated_under_us(sink):
            return
        outcome = sink.flush(tps)
        if outcome is not None and outcome.stale:
            # Read from an incarnation of the topic the table no longer counts in (it was recreated and
            # the table reset meanwhile): the halt's next check repositions them to the table's offsets.
            why = "records read from an earlier incarnation of the topic than the table's offsets count in"
            self._positions.halt(sink, {tp: why for tp in self._partitions_of(sink) if tp[0] in outcome.stale})
        if outcome is not None and not sink.routed:  # a routed table's seek would skip its siblings' records
            self._after_commit(outcome)

    def _after_commit(self, outcome: CommitOutcome) -> None:
        for tp, next_offset in outcome.fenced.items():
            log.warning("partition.fenced", partition=f"{tp[0]}/{tp[1]}", seek_to=next_offset)
            self.consumer.seek(tp, next_offset)
        for tp, next_offset in outcome.replayed.items():
            self.consumer.seek(tp, next_offset)
        if outcome.committed:
            self.consumer.commit_group_offsets(outcome.committed)

    # --- rebalance callbacks (run inside poll) --------------------------------------------------

    def _start_offsets(self, tps: list[TopicPartition]) -> Mapping[TopicPartition, int]:
        self._watch.assigned()
        self._claim_new_topics(sorted({t for t, _ in tps} - set(self._sink_of_topic) - set(self._routes)))
        starts: OffsetMap = {}
        for sink in self.sinks:
            mine = [tp for tp in tps if self._feeds(sink, tp[0])]
            if mine:
                sink.drop(mine)
        topics = sorted({t for t, _ in tps})
        current_ids = self._positions.current_ids(topics)
        for topic in topics:
            if not any(t == topic for t, _ in self.consumer.assigned):  # its first partitions here
                self._positions.set_read_id(topic, current_ids)
            mine = [tp for tp in tps if tp[0] == topic]
            offsets = self._positions.starts_for(topic, mine)
            starts.update(offsets)
            self._positions.check_topic(topic, mine, offsets, current_ids)
        return starts

    def _topics_of(self, sink: TableSink) -> list[str]:
        return sorted(t for t in {*self._sink_of_topic, *self._routes} if self._feeds(sink, t))

    def _on_out_of_range(self) -> None:
        """librdkafka stops fetching a partition whose position left the log until it is sought: each
        one is either halted with its table (the table's offsets are not in the log) or sought back
        to where its tables stand."""
        tps, self.consumer.out_of_range = sorted(self.consumer.out_of_range), set()
        tps = [tp for tp in tps if tp in self.consumer.assigned]
        for sink in self.sinks:
            mine = [tp for tp in tps if self._feeds(sink, tp[0])]
            if mine:
                try:
                    self._flush(sink, mine)  # what was read before is good
                except (CommitError, Cutover) as exc:
                    log.warning("table.commit_failed", table=sink.identifier, error=str(exc))  # read again
        topics = sorted({t for t, _ in tps})
        current_ids = self._positions.current_ids(topics)
        for topic in topics:
            mine = [tp for tp in tps if tp[0] == topic]
            offsets = self._positions.starts_for(topic, mine)
            if self._positions.check_topic(topic, mine, offsets, current_ids):
                continue  # released, and repositioned, once its tables' offsets are valid again
            log.info("partition.out_of_range_resought", partitions=[f"{t}/{p}" for t, p in mine],
                     offsets={f"{t}/{p}": n for (t, p), n in offsets.items()})
            self._positions.reposition(mine, offsets)

    def _hold_on_assign(self, tps: list[TopicPartition]) -> list[TopicPartition]:
        return self._gate.assign(tps)

    def _on_revoked(self, tps: list[TopicPartition]) -> None:
        self._watch.released(self._mine(tps), lost=False)
        for sink in self.sinks:
            mine = [tp for tp in tps if self._feeds(sink, tp[0])]
            if not mine:
                continue
            try:
                self._flush(sink, mine)
            except (CommitError, Cutover) as exc:
                # The next owner starts from the table, so nothing is lost by letting go.
                log.warning("revoke.commit_failed", table=sink.identifier, error=str(exc))
            sink.drop(mine)
        self._gate.release(tps)

    def _on_lost(self, tps: list[TopicPartition]) -> None:
        self._watch.released(self._mine(tps), lost=True)
        for sink in self.sinks:
            sink.drop(tps)
        self._gate.release(tps)


    def _mine(self, tps: list[TopicPartition]) -> list[tuple[TableSink, list[TopicPartition]]]:
        return [(sink, [tp for tp in tps if self._feeds(sink, tp[0])]) for sink in self.sinks]


def _exit_now(timeout: float) -> None:
    try:  # the line is said if it can be: a closed stderr (its reader gone) must not keep the process alive
        log.error("service.shutdown_timeout", seconds=timeout)
    finally:
        os._exit(ExitCode.SHUTDOWN_TIMEOUT)
