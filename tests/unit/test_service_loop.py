"""The service loop's decisions without a broker: an in-memory consumer (tests/fake_consumer.py) and a
real SQLite catalog. Rebalances fire inside `poll`, as they do with librdkafka; the loop is stopped
by a poll count (the fake fails a test whose loop is never stopped). tests/integration holds the
proof against the real broker."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from unittest import mock

import pytest
from pyiceberg.catalog.sql import SqlCatalog
from structlog.testing import capture_logs

from tabletopic.commit.committer import table_offsets
from tabletopic.config import CommitConfig, Config, ConsumerConfig, TableConfig
from tabletopic.core.exits import ExitCode
from tabletopic.offsets_admin import reset
from tabletopic.positions import POSITION_RECHECK_S
from tabletopic.service import Service
from tests.fake_consumer import FakeConsumer

T0, T1 = ("t", 0), ("t", 1)
NEVER = 3600.0  # a commit interval no test reaches


@pytest.fixture
def catalog(tmp_path):
    return SqlCatalog("test", uri=f"sqlite:///{tmp_path}/catalog.db", warehouse=f"file://{tmp_path}")


def config(interval=NEVER, max_buffer_bytes=1 << 30, cap=1 << 31, **table):
    return Config(
        group_id="g",
        tables=[TableConfig(**{"table": "ns.t", "topic": "t", **table})],
        commit=CommitConfig(interval_seconds=interval, max_buffer_bytes=max_buffer_bytes,
                            max_process_buffer_bytes=cap, retry_deadline_seconds=0.0),
        consumer=ConsumerConfig(batch_size=100, poll_timeout_seconds=0.5),
        shutdown_timeout_seconds=60.0,
    )


def broker(partitions=1, records=5, fake=None):
    fake = fake or FakeConsumer()
    fake.create_topic("t", partitions)
    for p in range(partitions):
        fake.produce("t", p, values(0, records))
    return fake


def values(first, count):
    return [b'{"n": %d}' % n for n in range(first, first + count)]


def at(poll, action: Callable[[FakeConsumer], object], fake: FakeConsumer) -> None:
    """Run `action` at the start of poll number `poll`."""
    fake.before_poll.append(lambda f: action(f) if f.polls == poll else None)


def run(service: Service, fake: FakeConsumer, polls: int | None = None) -> int:
    """Run the loop until poll number `polls`, on the fake's clock: the tables' own time stamps
    (the start of their last flush, the commit deadline) move with the skipped waits too."""
    if polls is not None:
        at(polls, lambda _: service.stop(), fake)
    with mock.patch.object(time, "monotonic", fake.clock):
        return service.run()


def service_on(catalog, fake, **settings):
    return Service(config(**settings), catalog, consumer=fake, list_topics=fake.list_topics, clock=fake.clock)


def committed(catalog):
    return table_offsets(catalog.load_table("ns.t"), "g")


def rows(catalog):
    """(partition, offset) of every row, sorted: a doubled or missing record shows."""
    table = catalog.load_table("ns.t").scan(selected_fields=("_kafka_partition", "_kafka_offset")).to_arrow()
    return sorted(zip(table["_kafka_partition"].to_pylist(), table["_kafka_offset"].to_pylist(), strict=True))


def write_first(catalog, fake, tps, polls=3):
    """A first service reads what the log holds, commits on stop, and leaves."""
    fake.before_poll.clear()
    at(1, lambda f: f.assign(tps), fake)
    assert run(service_on(catalog, fake), fake, polls) == ExitCode.OK
    fake.before_poll.clear()


def successor(fake: FakeConsumer) -> FakeConsumer:
    """A new member (new process) on the same logs."""
    new = FakeConsumer(clock=fake.clock)
    new.logs, new.ids = fake.logs, fake.ids
    return new


# --- assign ----------------------------------------------------------------------------------------


def test_assigned_partitions_start_where_their_table_stands(catalog):
    fake = broker(partitions=2)
    write_first(catalog, fake, [T0, T1])
    assert committed(catalog) == {T0: 5, T1: 5}
    fake = successor(fake)
    fake.produce("t", 0, values(5, 3))
    starts = {}
    at(1, lambda f: (f.assign([T0, T1]), starts.update(f.positions)), fake)
    assert run(service_on(catalog, fake), fake, 3) == ExitCode.OK
    assert starts == {T0: 5, T1: 5}  # from the table's snapshot, not the log's start
    assert committed(catalog) == {T0: 8, T1: 5}
    assert rows(catalog) == [(0, n) for n in range(8)] + [(1, n) for n in range(5)]


def test_a_partition_no_table_has_seen_starts_at_the_configured_start(catalog):
    fake = broker(records=4, fake=FakeConsumer(start="latest"))
    starts = {}
    at(1, lambda f: (f.assign([T0]), starts.update(f.positions)), fake)
    at(2, lambda f: f.produce("t", 0, values(4, 2)), fake)
    assert run(service_on(catalog, fake), fake, 4) == ExitCode.OK
    assert starts == {T0: 4}
    assert rows(catalog) == [(0, 4), (0, 5)]


# --- revoke and lost ------------------------------------------------------------------------------


def test_revoked_partitions_are_committed_then_dropped(catalog):
    fake = broker(partitions=2)
    seen = {}
    at(1, lambda f: f.assign([T0, T1]), fake)
    at(2, lambda f: f.revoke([T0]), fake)
    at(3, lambda _: seen.update(offsets=committed(catalog), buffered=sorted(service.sinks[0].buffer.partitions)),
       fake)
    service = service_on(catalog, fake)
    assert run(service, fake, 4) == ExitCode.OK
    assert seen == {"offsets": {T0: 5}, "buffered": [T1]}  # only the revoked partition, before the stop
    assert ({T0: 5}, False) in fake.group_commits  # while it was still assigned: lag tools see it
    assert rows(catalog) == [(0, n) for n in range(5)] + [(1, n) for n in range(5)]


def test_lost_partitions_are_dropped_without_a_commit(catalog):
    fake = broker(partitions=2)
    at(1, lambda f: f.assign([T0, T1]), fake)
    at(2, lambda f: f.lose([T0]), fake)
    service = service_on(catalog, fake)
    assert run(service, fake, 3) == ExitCode.OK
    assert committed(catalog) == {T1: 5}  # the next owner reads T0 again from the table
    assert all(T0 not in offsets for offsets, _ in fake.group_commits)
    assert rows(catalog) == [(1, n) for n in range(5)]


def test_a_partition_lost_then_assigned_again_is_read_again_from_the_table(catalog):
    fake = broker()
    at(1, lambda f: f.assign([T0]), fake)
    at(2, lambda f: f.lose([T0]), fake)
    at(3, lambda f: f.assign([T0]), fake)
    assert run(service_on(catalog, fake), fake, 5) == ExitCode.OK
    assert rows(catalog) == [(0, n) for n in range(5)]


# --- hold: a service the table needs is down ------------------------------------------------------


def failing_once(call):
    state = {"failed": False}

    def wrapper(*args, **kwargs):
        if not state["failed"]:
            state["failed"] = True
            raise ConnectionError("injected: the catalog is away")
        return call(*args, **kwargs)

    return wrapper


def test_a_catalog_outage_holds_the_table_reads_the_chunk_again_then_goes_on(catalog, monkeypatch):
    monkeypatch.setattr(catalog, "create_table", failing_once(catalog.create_table))
    fake = broker(records=5)
    fake.produce("t", 0, values(5, 1))
    at(1, lambda f: f.assign([T0]), fake)
    with capture_logs() as logs:
        assert run(service_on(catalog, fake), fake, 8) == ExitCode.OK
    events = [e["event"] for e in logs]
    assert "table.source_unavailable" in events and "table.retrying" in events
    # Read back to the chunk's first record and paused, then resumed after the backoff.
    assert fake.calls[:3] == [("seek", (T0, 0)), ("pause", [T0]), ("resume", [T0])]
    assert rows(catalog) == [(0, n) for n in range(6)]  # none lost, none doubled


def test_a_held_table_stays_paused_until_its_backoff_has_passed(catalog, monkeypatch):
    monkeypatch.setattr(catalog, "create_table", failing_once(catalog.create_table))
    fake = broker()
    paused_at = {}
    at(1, lambda f: f.assign([T0]), fake)
    fake.before_poll.append(lambda f: paused_at.setdefault(f.polls, (T0 in f.paused, f.clock.skipped)))
    assert run(service_on(catalog, fake), fake, 8) == ExitCode.OK
    held = [skipped for paused, skipped in paused_at.values() if paused]
    assert held and max(held) < 1.0 + 0.5  # table_backoff(1) is 1 s; a poll waits 0.5 s
    assert not paused_at[8][0]


# --- halt: the log cannot serve where the table stands --------------------------------------------


def test_a_table_whose_offsets_the_log_lost_halts_and_stays_halted(catalog):
    fake = broker()
    write_first(catalog, fake, [T0])
    fake = successor(fake)
    fake.produce("t", 0, values(5, 7))
    fake.logs[T0].start = 8  # retention took 5..7, which the table never had
    at(1, lambda f: f.assign([T0]), fake)
    polls = int(3 * POSITION_RECHECK_S / 0.5)  # several rechecks
    paused = []
    fake.before_poll.append(lambda f: paused.append(T0 in f.paused) if f.polls > 1 else None)
    with capture_logs() as logs:
        assert run(service_on(catalog, fake), fake, polls) == ExitCode.OK
    assert committed(catalog) == {T0: 5}
    assert all(paused) and not any(kind == "resume" for kind, _ in fake.calls)
    invalid = [e for e in logs if e["event"] == "table.offsets_invalid"]
    assert len(invalid) == 1 and "records 5..7 are gone" in invalid[0]["reason"]  # said once


def test_a_halted_table_goes_on_from_its_offsets_after_a_reset(catalog):
    fake = broker()
    write_first(catalog, fake, [T0])
    fake = successor(fake)
    fake.produce("t", 0, values(5, 7))
    fake.logs[T0].start = 8
    at(1, lambda f: f.assign([T0]), fake)
    at(3, lambda _: reset(catalog, "ns.t", "g", {T0: 8}), fake)  # `tabletopic offsets reset --to-offset 8`
    assert run(service_on(catalog, fake), fake, int(2 * POSITION_RECHECK_S / 0.5)) == ExitCode.OK
    assert ("reposition", (T0, 8)) in fake.calls and ("resume", [T0]) in fake.calls
    assert committed(catalog) == {T0: 12}
    assert rows(catalog) == [(0, n) for n in (*range(5), 8, 9, 10, 11)]


def test_a_topic_recreated_under_the_reader_halts_its_table_before_a_commit(catalog):
    fake = broker()
    at(1, lambda f: f.assign([T0]), fake)

    def recreate(f):
        f.recreate("t")
        f.produce("t", 0, values(100, 8))

    at(2, recreate, fake)  # before the first commit: the table counts in no topic yet
    with capture_logs() as logs:
        assert run(service_on(catalog, fake, interval=2.0), fake, 12) == ExitCode.OK  # flushes at polls 6 and 11
    # The old topic's records read before are dropped, the new topic is read from its start.
    assert any(e["event"] == "table.offsets_invalid" and "recreated" in e["reason"] for e in logs)
    assert ("reposition", (T0, None)) in fake.calls
    table = catalog.load_table("ns.t").scan(selected_fields=("n", "_kafka_offset")).to_arrow()
    assert sorted(zip(table["_kafka_offset"].to_pylist(), table["n"].to_pylist(), strict=True)) == [
        (o, 100 + o) for o in range(8)]


def test_a_topic_recreated_after_the_table_committed_halts_it_until_a_reset(catalog):
    fake = broker()
    at(1, lambda f: f.assign([T0]), fake)

    def recreate(f):
        f.recreate("t")
        f.produce("t", 0, values(100, 8))

    at(6, recreate, fake)
    paused = []
    fake.before_poll.append(lambda f: paused.append(T0 in f.paused) if f.polls > 10 else None)
    polls = 10 + int(2 * POSITION_RECHECK_S / 0.5)
    with capture_logs() as logs:
        assert run(service_on(catalog, fake, interval=2.0), fake, polls) == ExitCode.OK  # flushes at polls 5 and 10
    assert committed(catalog) == {T0: 5}  # the new topic's records are not committed under the old offsets
    assert rows(catalog) == [(0, n) for n in range(5)]
    assert paused and all(paused)  # the halted table reads nothing more, not even after rechecks
    assert any(e["event"] == "table.offsets_invalid" and "recreated" in e["reason"] for e in logs)
    assert not any(e["event"] == "table.offsets_valid" for e in logs)


def test_a_position_that_left_the_log_is_sought_back_to_the_table(catalog):
    fake = broker()
    at(1, lambda f: f.assign([T0]), fake)
    at(2, lambda f: f.seek(T0, 50), fake)  # as if the log had been read past its end
    assert run(service_on(catalog, fake), fake, 4) == ExitCode.OK
    assert ("reposition", (T0, 5)) in fake.calls  # the table committed 0..4 first
    assert rows(catalog) == [(0, n) for n in range(5)]


# --- memory relief ---------------------------------------------------------------------------------


def test_buffers_over_the_process_cap_are_flushed_early(catalog):
    fake = broker()
    seen = {}
    at(1, lambda f: f.assign([T0]), fake)
    at(2, lambda _: seen.update(offsets=committed(catalog)), fake)
    assert run(service_on(catalog, fake, cap=1), fake, 3) == ExitCode.OK
    assert seen == {"offsets": {T0: 5}}  # long before the commit interval


def test_a_table_that_cannot_commit_over_the_cap_pauses_reading_until_it_can(catalog, monkeypatch):
    fake = broker()
    at(1, lambda f: f.assign([T0]), fake)
    service = service_on(catalog, fake, cap=2)  # resumed below half the cap: when nothing is buffered
    committer = service.sinks[0].committer
    monkeypatch.setattr(committer, "load", failing_once(committer.load))
    with capture_logs() as logs:
        assert run(service, fake, 8) == ExitCode.OK
    events = [e["event"] for e in logs]
    assert "memory.paused" in events and "memory.resumed" in events
    assert ("pause", [T0]) in fake.calls and ("resume", [T0]) in fake.calls
    assert fake.calls.index(("pause", [T0])) < fake.calls.index(("resume", [T0]))
    assert rows(catalog) == [(0, n) for n in range(5)]


# --- flush due ---------------------------------------------------------------------------------------


def test_a_table_is_flushed_when_its_commit_interval_has_passed(catalog):
    fake = broker()
    first_commit = []
    at(1, lambda f: f.assign([T0]), fake)

    def watch(f):
        if not first_commit and catalog.table_exists("ns.t") and committed(catalog):
            first_commit.append(f.clock.skipped)

    fake.before_poll.append(watch)
    assert run(service_on(catalog, fake, interval=5.0), fake, 20) == ExitCode.OK
    assert first_commit and 5.0 <= first_commit[0] <= 5.0 + 1.0  # 20 polls are 9.5 s: before the stop


def test_a_table_is_flushed_when_its_buffer_is_full(catalog):
    fake = broker()
    seen = {}
    at(1, lambda f: f.assign([T0]), fake)
    at(2, lambda _: seen.update(offsets=committed(catalog)), fake)
    assert run(service_on(catalog, fake, max_buffer_bytes=1), fake, 3) == ExitCode.OK
    assert seen == {"offsets": {T0: 5}}


# --- shutdown ---------------------------------------------------------------------------------------


def test_stop_flushes_commits_the_group_offsets_and_leaves(catalog):
    fake = broker(partitions=2)
    at(1, lambda f: f.assign([T0, T1]), fake)
    assert run(service_on(catalog, fake), fake, 3) == ExitCode.OK
    assert committed(catalog) == {T0: 5, T1: 5}
    assert ({T0: 5, T1: 5}, True) in fake.group_commits  # waited for, before leaving
    assert fake.closed and not fake.assigned


def test_sigterm_stops_the_loop_like_stop(catalog):
    fake = broker()
    at(1, lambda f: f.assign([T0]), fake)
    at(3, lambda _: os.kill(os.getpid(), signal.SIGTERM), fake)
    service = service_on(catalog, fake)
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    try:
        service.install_signal_handlers()
        with capture_logs() as logs:
            assert run(service, fake) == ExitCode.OK
    finally:
        signal.signal(signal.SIGTERM, before[0])
        signal.signal(signal.SIGINT, before[1])
    assert fake.polls == 3
    assert [e["signal"] for e in logs if e["event"] == "service.stopping"] == ["SIGTERM"]
    assert committed(catalog) == {T0: 5}


def test_a_bad_record_stops_the_service_and_the_good_ones_before_it_are_kept(catalog):
    fake = broker(records=3)
    fake.produce("t", 0, [b"not json", b'{"n": 4}'])
    at(1, lambda f: f.assign([T0]), fake)
    assert run(service_on(catalog, fake, errors="fail"), fake, 5) == ExitCode.BAD_RECORD
    assert fake.polls == 1
    assert committed(catalog) == {T0: 3}
