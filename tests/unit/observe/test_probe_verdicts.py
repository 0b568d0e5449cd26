"""A pool's probing worker publishes its verdicts on the services; the supervisor's /readyz reads them back."""

from __future__ import annotations

from prometheus_client import REGISTRY

from tabletopic.observe import metrics
from tabletopic.observe.http import PublishedVerdict


def verdict(probe: str) -> str | None:
    return metrics.probe_verdict(REGISTRY.collect(), probe)


def test_a_probe_nobody_published_says_the_probing_worker_is_not_up() -> None:
    assert "probing worker" in (verdict("never-published") or "")
    assert "probing worker" in (PublishedVerdict("never-published").error() or "")


def test_a_verdict_the_probing_worker_stopped_renewing_is_stale() -> None:
    metrics.record_probe("stale-test", None, now=1000.0)
    assert metrics.probe_verdict(REGISTRY.collect(), "stale-test", now=1000.0 + metrics.STALE_VERDICT_S - 1) is None
    stale = metrics.probe_verdict(REGISTRY.collect(), "stale-test", now=1000.0 + metrics.STALE_VERDICT_S + 1)
    assert stale is not None and "stalled" in stale


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


def test_a_check_the_service_never_answers_does_not_hold_the_process_at_exit() -> None:
    import subprocess
    import sys

    script = ("import threading\n"
              "from tabletopic.observe.probes import Probe\n"
              "probe = Probe(threading.Event().wait, 'hung', timeout_s=0.1)\n"
              "print(probe.error(wait_s=0.2))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "not checked yet"  # its first answer, while the check runs on
