"""The service loop during a rebuild's cutover, without a broker (tests/fake_consumer.py, a real SQLite
catalog): a frozen table's commits wait with its rows kept, and a table that comes to record another
projection makes the writer make its sink again and read again from the table's offsets, the rest of
that poll's chunks skipped. Each record lands once. tests/integration/test_rebuild*.py are the proof
against the real broker."""

from __future__ import annotations

import dataclasses
import time

from structlog.testing import capture_logs

from tabletopic.catalog.projection import PROJECTION_KEY, encode_projection
from tabletopic.config import TableConfig
from tabletopic.core.exits import ExitCode
from tabletopic.rebuild import cutover
from tests.unit.test_service_loop import (
    at,
    broker,
    catalog,
    committed,
    rows,
    run,
    service_on,
    successor,
    values,
    write_first,
)

__all__ = ["catalog"]  # the fixture, shared

T0, T1 = ("t", 0), ("t", 1)


def stamp_another_projection(catalog) -> None:  # type: ignore[no-untyped-def]
    """What a cutover leaves: the table records a projection other than the writer's config."""
    other = dataclasses.replace(TableConfig(table="ns.t", topic="t"), json_drift="ignore")
    cutover.set_properties(catalog, "ns.t", {PROJECTION_KEY: encode_projection(other)})


def test_a_frozen_table_keeps_its_rows_until_the_freeze_lifts_then_commits_them_once(catalog):
    first = broker(partitions=2, records=5)
    write_first(catalog, first, [T0, T1])
    fake = successor(first)
    cutover.freeze(catalog, "ns.t", "g", "cut-1", time.time() + 3600)
    at(1, lambda f: f.assign([T0, T1]), fake)
    service = service_on(catalog, fake, interval=1.0)
    at(2, lambda f: [f.produce("t", p, values(5, 5)) for p in (0, 1)], fake)
    at(10, lambda f: frozen_offsets.append(committed(catalog)), fake)
    at(12, lambda f: cutover.unfreeze(catalog, "ns.t", "cut-1"), fake)
    frozen_offsets: list[dict] = []
    with capture_logs() as logs:
        assert run(service, fake, polls=20) == ExitCode.OK
    assert frozen_offsets == [{T0: 5, T1: 5}]  # nothing committed while frozen
    assert any(e["event"] == "table.frozen_for_cutover" for e in logs)
    assert committed(catalog) == {T0: 10, T1: 10}
    assert rows(catalog) == [(p, o) for p in (0, 1) for o in range(10)]


def test_a_table_recording_another_projection_is_read_again_under_it_and_stale_chunks_are_skipped(catalog):
    first = broker(partitions=2, records=5)
    write_first(catalog, first, [T0, T1])
    fake = successor(first)
    at(1, lambda f: f.assign([T0, T1]), fake)
    service = service_on(catalog, fake, interval=1.0)
    at(2, lambda f: stamp_another_projection(catalog), fake)
    # One poll brings a new field on partition 0 (its evolution meets the new projection: ProjectionChanged from
    # ingest) and plain records on partition 1, whose chunk comes after it and must not be taken by the new sink.
    at(3, lambda f: (f.produce("t", 0, [b'{"n": 5, "extra": 1}', *values(6, 4)]), f.produce("t", 1, values(5, 5))),
       fake)
    with capture_logs() as logs:
        assert run(service, fake, polls=20) == ExitCode.OK
    assert any(e["event"] == "table.projection_adopted" for e in logs), [e["event"] for e in logs]
    assert committed(catalog) == {T0: 10, T1: 10}
    assert rows(catalog) == [(p, o) for p in (0, 1) for o in range(10)]
    names = [f.name for f in catalog.load_table("ns.t").schema().fields]
    assert "extra" not in names  # the new projection drops unknown fields; the old one never evolved the table
