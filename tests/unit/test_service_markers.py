"""Offsets that hold no record (transaction markers, aborted records, compacted gaps) on the service loop's way,
without a broker: the fake consumer passes them as librdkafka does (its position moves, no record comes).
A table's offsets reach the consumer's position, so no lag of one stays behind the last commit marker;
nothing is claimed for a partition that waits or whose position is unknown. tests/compat/test_transactional_topics.py
holds the proof against the real broker."""

from __future__ import annotations

import json

import pytest
from pyiceberg.catalog.sql import SqlCatalog

from tabletopic.catalog import reader
from tabletopic.core.exits import ExitCode
from tabletopic.service import Service
from tests.fake_consumer import FakeConsumer
from tests.unit.test_service_loop import T0, at, committed, config, rows, run, values


@pytest.fixture
def catalog(tmp_path):
    return SqlCatalog("test", uri=f"sqlite:///{tmp_path}/catalog.db", warehouse=f"file://{tmp_path}")


def service_on(catalog, fake, **settings):
    return Service(config(**settings), catalog, consumer=fake, list_topics=fake.list_topics, clock=fake.clock)


def topic(fake=None):
    fake = fake or FakeConsumer()
    fake.create_topic("t", 1)
    return fake


def test_a_commit_marker_at_the_log_end_is_covered_by_the_table_offsets(catalog):
    fake = topic()
    fake.produce("t", 0, values(0, 5))
    fake.mark("t", 0)  # the transaction's commit marker at 5: the log ends at 6
    at(1, lambda f: f.assign([T0]), fake)
    assert run(service_on(catalog, fake), fake, 4) == ExitCode.OK
    assert committed(catalog) == {T0: 6}  # was 5: a lag of 1 for ever
    assert rows(catalog) == [(0, n) for n in range(5)]


def test_a_marker_written_after_the_last_commit_moves_the_offsets_with_a_commit_of_its_own(catalog):
    fake = topic()
    fake.produce("t", 0, values(0, 5))
    at(1, lambda f: f.assign([T0]), fake)
    at(4, lambda f: f.mark("t", 0), fake)
    service = service_on(catalog, fake, interval=1.0)
    assert run(service, fake, 12) == ExitCode.OK
    assert committed(catalog) == {T0: 6}
    assert rows(catalog) == [(0, n) for n in range(5)]
    snapshots = catalog.load_table("ns.t").snapshots()
    assert [s.summary["added-records"] if "added-records" in s.summary.additional_properties else "0"
            for s in snapshots] == ["5", "0"]  # the second snapshot moves the offsets only


def test_markers_and_aborted_records_inside_the_log_are_gaps_between_records(catalog):
    fake = topic()
    fake.produce("t", 0, values(0, 3))
    fake.mark("t", 0, 4)  # a marker, two aborted records and their abort marker: 3..6
    fake.produce("t", 0, values(3, 2))  # 7, 8
    fake.mark("t", 0)  # 9
    at(1, lambda f: f.assign([T0]), fake)
    assert run(service_on(catalog, fake), fake, 4) == ExitCode.OK
    assert committed(catalog) == {T0: 10}
    assert rows(catalog) == [(0, 0), (0, 1), (0, 2), (0, 7), (0, 8)]


def test_a_table_held_after_its_buffer_was_dropped_claims_nothing_past_its_offsets(catalog):
    fake = topic()
    fake.produce("t", 0, values(0, 5))
    at(1, lambda f: f.assign([T0]), fake)
    service = service_on(catalog, fake, interval=1.0)

    def more(f):
        f.produce("t", 0, values(5, 5))
        f.mark("t", 0)

    def hold_and_drop(_):
        # As a topic recreated under the writer: the table stops, what it buffered is dropped (read again later).
        service._held["ns.t"] = float("inf")
        service.sinks[0].drop([T0])

    at(5, more, fake)  # read and buffered at poll 5, due at poll 6's end (a second after the first flush)
    at(6, hold_and_drop, fake)
    assert run(service, fake, 10) == ExitCode.OK
    assert committed(catalog) == {T0: 5}  # not 11: records 5..9 were never committed
    assert rows(catalog) == [(0, n) for n in range(5)]


def test_a_partition_whose_table_holds_nothing_is_not_claimed_from_markers_alone(catalog):
    fake = topic(FakeConsumer(start="latest"))
    fake.produce("t", 0, values(0, 3))
    at(1, lambda f: f.assign([T0]), fake)  # at the log end (3): the table exists only once a record comes
    at(2, lambda f: f.mark("t", 0, 2), fake)
    assert run(service_on(catalog, fake), fake, 5) == ExitCode.OK
    assert not catalog.table_exists("ns.t")


def test_an_upsert_table_moves_its_offsets_past_a_marker_and_keeps_its_state(catalog):
    fake = topic()
    keys = [json.dumps({"k": n % 2}).encode() for n in range(4)]
    fake.produce("t", 0, [json.dumps({"k": n % 2, "v": n}).encode() for n in range(4)], keys)
    fake.mark("t", 0)
    at(1, lambda f: f.assign([T0]), fake)
    at(4, lambda f: f.mark("t", 0), fake)  # a later transaction's marker, once the table is idle
    service = service_on(catalog, fake, interval=1.0, mode="upsert")
    assert run(service, fake, 12) == ExitCode.OK
    assert committed(catalog) == {T0: 6}
    state = sorted((r["k"], r["v"]) for r in reader.read(catalog.load_table("ns.t")).to_pylist())
    assert state == [(0, 2), (1, 3)]
