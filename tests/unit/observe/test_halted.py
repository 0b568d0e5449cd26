"""A table halted by a fault no retry fixes shows on /readyz (table and reason, no error text) and in
`tabletopic_table_halted{table,reason}`, and clears when the table commits again."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

from tabletopic.commit.faults import FIXES
from tabletopic.observe import metrics
from tabletopic.observe.health import readiness


def test_readiness_names_each_halted_table_with_its_reason_and_fix() -> None:
    halted = {"lake.orders": "no_such_bucket", "lake.clicks": "access_denied"}
    assert readiness({"a": 1}, 1, None, None, halted) == (
        f"table lake.clicks halted (access_denied): {FIXES['access_denied']}; "
        f"table lake.orders halted (no_such_bucket): {FIXES['no_such_bucket']}"
    )
    assert readiness({"a": 1}, 1, None, None, {}) is None
    assert readiness({"a": 1}, 1, "down", None, halted) == "catalog unreachable: down"


def test_the_halted_gauge_follows_the_table() -> None:
    metrics.record_table_halted("lake.t1", "no_such_bucket")
    metrics.record_table_halted("lake.t2", "access_denied")
    metrics.record_table_halted("lake.t2", "invalid_credentials")  # a new reason replaces the old one
    halted = metrics.halted_tables(metrics.table_halted.collect())
    assert halted == {"lake.t1": "no_such_bucket", "lake.t2": "invalid_credentials"}
    assert metrics.record_table_going("lake.t1") is True
    assert metrics.record_table_going("lake.t1") is False
    assert metrics.halted_tables(metrics.table_halted.collect()) == {"lake.t2": "invalid_credentials"}
    metrics.record_table_going("lake.t2")
    assert metrics.halted_tables(metrics.table_halted.collect()) == {}


def test_other_gauges_are_not_read_as_halts() -> None:
    registry = CollectorRegistry()
    Gauge("tabletopic_other", "x", ["table", "reason"], registry=registry).labels("t", "r").set(1)
    assert metrics.halted_tables(registry.collect()) == {}


def test_a_probe_names_a_permanent_fault_and_never_a_secret() -> None:
    from pyiceberg.exceptions import ForbiddenError

    from tabletopic import logs
    from tabletopic.observe.probes import verdict_of

    logs.mask_also(["probe-secret-5f1c"])
    verdict = verdict_of(ForbiddenError("denied for token probe-secret-5f1c"))
    assert verdict == f"catalog_forbidden ({FIXES['catalog_forbidden']})"
    assert verdict_of(TimeoutError("slow https://cat?token=unknown-to-the-mask")) == "TimeoutError; details in the log"
