"""Edges of the loop on the in-memory consumer: the clock seam alone paces commits, a chunk fetched before
its table was held is read again, a pattern table claimed after start halts and is released. See
tests/unit/test_service_loop.py for the helpers' meaning."""

from __future__ import annotations

import itertools
import time
from unittest import mock

import pytest
from pyiceberg.catalog.sql import SqlCatalog

from tabletopic.core.exits import ExitCode
from tabletopic.offsets_admin import reset
from tabletopic.positions import POSITION_RECHECK_S
from tabletopic.service import Service
from tests.fake_consumer import FakeConsumer
from tests.unit.test_service_loop import (
    T0,
    T1,
    at,
    broker,
    committed,
    config,
    rows,
    run,
    service_on,
    successor,
    values,
    write_first,
)


@pytest.fixture
def catalog(tmp_path):
    return SqlCatalog("test", uri=f"sqlite:///{tmp_path}/catalog.db", warehouse=f"file://{tmp_path}")


def test_the_clock_seam_alone_paces_commits(catalog):
    """Service(clock=...) is the loop's seam to time: the writer stamps its flushes with it too, since
    flush_due compares that stamp with the loop's `now` (before, the writer read time.monotonic and, on any
    other clock, every turn after the first flush committed)."""
    fake = broker(records=1)
    fake.clock.advance(1000.0)  # any clock whose zero is not the process's monotonic zero
    at(1, lambda f: f.assign([T0]), fake)
    fake.before_poll.append(lambda f: f.produce("t", 0, values(f.polls, 1)) if f.polls % 2 == 0 else None)
    stamps: list[float] = []

    def watch(f: FakeConsumer) -> None:
        if catalog.table_exists("ns.t"):
            n = len(catalog.load_table("ns.t").metadata.snapshots)
            stamps.extend([f.clock.skipped] * (n - len(stamps)))

    fake.before_poll.append(watch)
    at(40, lambda _: service.stop(), fake)
    service = Service(config(interval=3.0), catalog, consumer=fake, list_topics=fake.list_topics, clock=fake.clock)
    assert service.run() == ExitCode.OK  # no mock.patch of time.monotonic: the clock seam only
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert gaps and min(gaps) >= 3.0 - 0.5, f"commits {3.0} s apart expected, got gaps {gaps}"


def test_a_chunk_fetched_with_a_held_tables_other_partition_is_read_again(catalog, monkeypatch):
    """Two partitions of one table in one batch; the first chunk's ingest holds the table (catalog away):
    the second chunk, fetched before the hold, is sought back (service.py:301) and read after it."""
    state = {"failed": False}
    create = catalog.create_table

    def failing_once(*args, **kwargs):
        if not state["failed"]:
            state["failed"] = True
            raise ConnectionError("injected: the catalog is away")
        return create(*args, **kwargs)

    monkeypatch.setattr(catalog, "create_table", failing_once)
    fake = broker(partitions=2)
    at(1, lambda f: f.assign([T0, T1]), fake)
    assert run(service_on(catalog, fake), fake, 10) == ExitCode.OK
    assert ("seek", (T0, 0)) in fake.calls and ("seek", (T1, 0)) in fake.calls
    assert rows(catalog) == [(p, n) for p in (0, 1) for n in range(5)]  # none lost, none doubled
    assert committed(catalog) == {T0: 5, T1: 5}


def test_a_pattern_table_claimed_after_start_halts_and_is_released_by_the_recheck(catalog):
    """The sink of a topic_pattern table is added at assignment, after Positions was built: its halt and
    its recheck (positions.py recheck_halted builds its names from the shared sinks list) must see it."""
    fake = broker()
    write_first(catalog, fake, [T0])
    fake = successor(fake)
    fake.produce("t", 0, values(5, 7))
    fake.logs[T0].start = 8  # retention took 5..7
    at(1, lambda f: f.assign([T0]), fake)
    at(3, lambda _: reset(catalog, "ns.t", "g", {T0: 8}), fake)
    service = Service(config(topic=None, topic_pattern="t"), catalog, consumer=fake, list_topics=fake.list_topics,
                      clock=fake.clock)
    assert service.sinks == []  # nothing until the pattern topic is assigned
    with mock.patch.object(time, "monotonic", fake.clock):
        at(int(2 * POSITION_RECHECK_S / 0.5), lambda _: service.stop(), fake)
        assert service.run() == ExitCode.OK
    assert ("reposition", (T0, 8)) in fake.calls and ("resume", [T0]) in fake.calls
    assert rows(catalog) == [(0, n) for n in (*range(5), 8, 9, 10, 11)]
