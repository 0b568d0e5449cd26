"""A pool's probing worker publishes its verdicts on the services; the supervisor's /readyz reads them back."""

from __future__ import annotations

from prometheus_client import REGISTRY

from tabletopic.observe import metrics
from tabletopic.observe.http import PublishedVerdict


def verdict(probe: str) -> str | None:
    return metrics.probe_verdict(REGISTRY.collect(), probe)


def test_a_probe_nobody_published_is_not_checked_yet() -> None:
    assert verdict("never-published") == "not checked yet"
    assert PublishedVerdict("never-published").error() == "not checked yet"


def test_the_latest_verdict_wins_and_an_answer_clears_it() -> None:
    metrics.record_probe("verdicts-test", "not checked yet")
    assert verdict("verdicts-test") == "not checked yet"
    metrics.record_probe("verdicts-test", "ConnectionError; details in the log")
    assert verdict("verdicts-test") == "ConnectionError; details in the log"
    metrics.record_probe("verdicts-test", None)
    assert verdict("verdicts-test") is None
    assert PublishedVerdict("verdicts-test").error() is None
    metrics.record_probe("verdicts-test", "no answer within 5 s")
    assert verdict("verdicts-test") == "no answer within 5 s"
