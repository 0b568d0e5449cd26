"""Where each assigned partition reads from, and whether its log can serve that: the start offsets
its tables give, the halt of a table whose offsets the log cannot serve (retention, a recreated
topic), the recheck that lets a halted table go on after `offsets reset`, and repositioning.

The service's loop and rebalance handlers call it; it acts on the consumer (pause, resume,
reposition) through the partition gate, and on the tables only by dropping what they buffered.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import structlog
from pyiceberg.catalog import Catalog

from tabletopic.catalog.tables import load_if_exists
from tabletopic.commit import gate
from tabletopic.commit.committer import table_topic_ids
from tabletopic.commit.offsets import OffsetMap, TopicPartition, identity_problem, position_problem
from tabletopic.kafka.errors import KafkaException
from tabletopic.kafka.interface import GroupMember
from tabletopic.sink import TableSink

log = structlog.get_logger(__name__)

# Topic ids asked of the broker before a commit are reused this long: one request for the flushes of
# one loop turn, and at most one wait for a broker that does not answer.
IDS_REUSE_S = 1.0
IDS_TIMEOUT_S = 2.0  # a commit does not need the broker: a broker away delays it this long at most
# How often a table halted on invalid offsets looks again (an `offsets reset` lets it go on).
POSITION_RECHECK_S = 5.0


class Positions:
    def __init__(self, consumer: GroupMember, catalog: Catalog, group: str, partition_gate: gate.PartitionGate,
                 sinks: list[TableSink], sinks_for: Callable[[str], list[TableSink]],
                 topics_of: Callable[[TableSink], list[str]], read_ids: dict[str, str],
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`sinks`, `sinks_for` and `topics_of`: the service's tables and which topics feed each (they grow
        as pattern topics join). `read_ids`: topic -> the id of the topic its assigned partitions are read
        from (as of their assignment or last reposition), shared with the committers that record it."""
        self._consumer = consumer
        self._catalog = catalog
        self._group = group
        self._gate = partition_gate
        self._sinks = sinks
        self._sinks_for = sinks_for
        self._topics_of = topics_of
        self._clock = clock
        self.read_ids = read_ids
        self._ids_seen: dict[str, str] = {}  # the broker's latest answer, for the check before each commit
        self._ids_seen_at = -IDS_REUSE_S
        self.halted: dict[str, dict[TopicPartition, str]] = {}  # table -> partitions the log cannot serve
        self._next_check = 0.0

    def feeds(self, sink: TableSink, topic: str) -> bool:
        return sink in self._sinks_for(topic)

    def partitions_of(self, sink: TableSink) -> list[TopicPartition]:
        return sorted(tp for tp in self._consumer.assigned if self.feeds(sink, tp[0]))

    def current_ids(self, topics: list[str], timeout_s: float = 10.0) -> dict[str, str]:
        try:
            return self._consumer.topic_ids(topics, timeout_s)
        except KafkaException as exc:  # the broker is away: the log bounds are still checked
            log.warning("kafka.topic_ids_unavailable", topics=topics, error=str(exc))
            return {}

    def set_read_id(self, topic: str, current_ids: Mapping[str, str]) -> None:
        if topic in current_ids:
            self.read_ids[topic] = current_ids[topic]
        else:
            self.read_ids.pop(topic, None)

    def recreated_under_us(self, sink: TableSink) -> bool:
        """Before a commit: has a topic the table reads been deleted and created again since it was
        assigned? Done fast enough (between two metadata refreshes), that brings no rebalance and no
        out-of-range: the new log is read from the old position, and must not be committed under the
        old topic's offsets. The table halts instead, and reads again from its offsets after a reset."""
        assigned = self._consumer.assigned
        topics = sorted({t for t, _ in assigned if t in self.read_ids and self.feeds(sink, t)})
        if not topics:
            return False
        now = self._clock()
        if now - self._ids_seen_at > IDS_REUSE_S or not set(topics) <= set(self._ids_seen):
            self._ids_seen, self._ids_seen_at = self.current_ids(sorted({t for t, _ in assigned}), IDS_TIMEOUT_S), now
        changed = {t for t in topics if self._ids_seen.get(t, self.read_ids[t]) != self.read_ids[t]}
        if not changed:
            return False
        for topic in sorted(changed):
            for each in self._sinks_for(topic):
                problem = identity_problem(self.read_ids[topic], self._ids_seen[topic])
                assert problem is not None
                mine = [tp for tp in assigned if tp[0] == topic]
                each.drop(mine)  # read from the new log: read again after the reset, from the table's offsets
                self.halt(each, {**self.halted.get(each.identifier, {}), **dict.fromkeys(mine, problem)})
        return True

    def check_topic(self, topic: str, tps: list[TopicPartition], offsets: Mapping[TopicPartition, int],
                    current_ids: Mapping[str, str]) -> bool:
        """Halt each table of the topic whose offsets the log cannot serve; whether any was halted."""
        halted = False
        for sink in self._sinks_for(topic):
            # A routed table is judged on its own offsets: the lowest of them, or the log start a
            # sibling without offsets falls back to, could hide records lost to retention.
            problems = self._problems(sink, tps, sink.start_offsets(tps) if sink.routed else offsets, current_ids)
            if problems:
                self.halt(sink, problems)
                halted = True
        return halted

    def starts_for(self, topic: str, tps: list[TopicPartition]) -> OffsetMap:
        """Where these partitions start: the table's offsets, or, for a routed topic, the lowest of its
        tables' (the others trim what they hold); a routed table that exists without an offset for a
        partition sends it back to the log's start."""
        sinks = self._sinks_for(topic)
        if not sinks:
            return {}
        if len(sinks) == 1 and not sinks[0].routed:
            return sinks[0].start_offsets(tps)
        per_sink = [(sink.start_offsets(tps), sink.exists()) for sink in sinks]
        starts: OffsetMap = {}
        for tp in tps:
            known = [offsets[tp] for offsets, exists in per_sink if exists and tp in offsets]
            unknown = any(exists and tp not in offsets for offsets, exists in per_sink)
            if unknown:
                starts[tp] = self._consumer.watermarks(tp)[0]
            elif known:
                starts[tp] = min(known)
        return starts

    def _problems(self, sink: TableSink, tps: list[TopicPartition], offsets: Mapping[TopicPartition, int],
                  current_ids: Mapping[str, str]) -> dict[TopicPartition, str]:
        """Why the log cannot serve where the table stands, per partition: never read past a gap or a
        recreation. A topic whose id is not the one the table's offsets were recorded in is recreated,
        whatever its bounds say (its new log may have grown past the old offsets)."""
        found = {}
        table = load_if_exists(self._catalog, sink.identifier)
        recorded = {} if table is None else table_topic_ids(table, self._group)
        for tp in tps:
            problem = identity_problem(recorded.get(tp[0]), current_ids.get(tp[0]))
            if problem is not None:
                found[tp] = problem
        for tp, next_offset in offsets.items():
            if tp in found:
                continue
            try:
                bounds = self._consumer.watermarks(tp)
            except KafkaException as exc:
                # The broker is away: held until it answers (a halted table released on no answer could
                # read a recreated or truncated log from its old offsets).
                log.warning("kafka.watermarks_unavailable", partition=f"{tp[0]}/{tp[1]}", error=str(exc))
                found[tp] = "the broker did not give the log's bounds: judged again when it answers"
                continue
            problem = position_problem(next_offset, *bounds)
            if problem is not None:
                found[tp] = problem
        return found

    def halt(self, sink: TableSink, problems: dict[TopicPartition, str]) -> None:
        known = self.halted.get(sink.identifier, {})
        self.halted[sink.identifier] = problems
        # The table stops, and partitions of its topics assigned later are paused on assign.
        self._consumer.pause(self._gate.close(gate.halted(sink.identifier), self._topics_of(sink)))
        for (topic, partition), problem in problems.items():
            if known.get((topic, partition)) == problem:
                continue  # said already
            if problem.startswith("the broker did not"):
                log.warning("table.offsets_unknown", table=sink.identifier, topic=topic, partition=partition,
                            reason=problem)
                continue
            # A recreated topic is reset whole: its other partitions' offsets count in the old topic too.
            only = "" if "recreated" in problem else f"--partitions {partition} "
            log.error("table.offsets_invalid", table=sink.identifier, topic=topic, partition=partition,
                      reason=problem, fix=f"tabletopic offsets reset --config CONFIG --table {sink.identifier} "
                                          f"--topic {topic} {only}--to-earliest (or --to-offset N)")

    def recheck_halted(self, now: float) -> None:
        """A halted table goes on by itself once its offsets are valid again (after `offsets reset`)."""
        if not self.halted or now < self._next_check:
            return
        self._next_check = now + POSITION_RECHECK_S
        named = {sink.identifier: sink for sink in self._sinks}
        for name in list(self.halted):
            sink = named[name]
            mine = self.partitions_of(sink)
            topics = sorted({t for t, _ in mine})
            current_ids = self.current_ids(topics)
            offsets: OffsetMap = {}
            for topic in topics:
                offsets.update(self.starts_for(topic, [tp for tp in mine if tp[0] == topic]))
            problems = self._problems(sink, mine, sink.start_offsets(mine) if sink.routed else offsets, current_ids)
            if problems:
                self.halt(sink, problems)
                continue
            del self.halted[name]
            for topic in topics:
                self.set_read_id(topic, current_ids)
            self.reposition(mine, offsets)
            self._consumer.resume(self._gate.open(gate.halted(name)))
            log.info("table.offsets_valid", table=name, offsets={f"{t}/{p}": n for (t, p), n in offsets.items()})

    def reposition(self, tps: list[TopicPartition], offsets: Mapping[TopicPartition, int]) -> None:
        """Read these partitions again from where their tables stand (the configured start for one
        no table has seen): what any table buffered of them is dropped first, it will be read again."""
        for sink in self._sinks:
            mine = [tp for tp in tps if self.feeds(sink, tp[0])]
            if mine:
                sink.drop(mine)
        for tp in tps:
            self._consumer.reposition(tp, offsets.get(tp))
        # A partition assigned afresh (its position had left the log) starts unpaused.
        self._consumer.pause([tp for tp in tps if self._gate.is_paused(tp)])
