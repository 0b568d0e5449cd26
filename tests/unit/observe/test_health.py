from __future__ import annotations

import json
import threading

import pytest
import structlog

from tabletopic.observe.health import liveness, readiness
from tabletopic.observe.probes import Probe
from tabletopic.observe.watch import partition_lag


def test_liveness_waits_for_workers_then_watches_every_loop() -> None:
    assert liveness({}, now=100, running_for=10, stall_s=60) is None
    assert liveness({}, now=100, running_for=61, stall_s=60) == "no worker has started in 61 s"
    assert liveness({"a": 95, "b": 99}, now=100, running_for=500, stall_s=60) is None
    reason = liveness({"a": 95, "b": 20}, now=100, running_for=500, stall_s=60)
    assert reason is not None and "worker b" in reason and "80 s" in reason


def test_readiness_names_what_is_missing() -> None:
    assert readiness({"a": 1, "b": 1}, 2, None, None) is None
    assert readiness({"a": 1, "b": 0}, 2, None, None) == "1 of 2 workers have joined the consumer group"
    assert readiness({}, 1, "no answer within 5 s", None) == "catalog unreachable: no answer within 5 s"
    assert readiness({"a": 1}, 1, "x", "refused") == "broker unreachable: refused"


def test_lag_counts_from_the_table_offset() -> None:
    assert partition_lag(120, 100) == 20
    assert partition_lag(120, 120) == 0
    assert partition_lag(120, None) == 120
    assert partition_lag(90, 100) == 0  # a cached log end older than the commit


def test_probe_answers_at_once_with_the_last_verdict_while_a_check_hangs() -> None:
    release = threading.Event()
    calls: list[str] = []
    now = [0.0]

    def check() -> None:
        calls.append("x")
        if len(calls) == 2:
            release.wait(10)
            raise ConnectionError("refused")

    probe = Probe(check, timeout_s=5, clock=lambda: now[0], cache_s=0)
    assert probe.error() is None
    assert probe.error(wait_s=0.05) is None  # hanging: still the last verdict
    now[0] = 6.0
    assert probe.error(wait_s=0.05) == "no answer within 5 s"
    release.set()
    assert probe.error() == "ConnectionError; details in the log"
    assert probe.error() is None
    assert len(calls) == 3


def test_a_probe_verdict_is_reused_for_a_few_seconds() -> None:
    calls: list[float] = []
    now = [100.0]
    probe = Probe(lambda: calls.append(now[0]), clock=lambda: now[0], cache_s=5)
    for _ in range(50):  # /readyz in a loop: one call to the service
        assert probe.error() is None
    now[0] = 104.9
    assert probe.error() is None
    assert calls == [100.0]
    now[0] = 105.0
    assert probe.error() is None
    assert calls == [100.0, 105.0]


def test_a_probe_never_answers_with_the_exception_text_but_logs_it_masked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tabletopic import logs

    logs.configure("info", json_output=True)

    def check() -> None:
        raise ConnectionError("GET https://catalog:8181/v1/config?token=TOK123 refused by catalog-host-7")

    probe = Probe(check, name="catalog", cache_s=0)
    verdict = probe.error()
    assert verdict == "ConnectionError; details in the log"
    assert readiness({"a": 1}, 1, verdict, None) == "catalog unreachable: ConnectionError; details in the log"
    probe.error()  # the same failure again: one log line, not one per probe
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["event"] for line in lines] == ["probe.failed"]
    assert "catalog-host-7" in lines[0]["error"] and "TOK123" not in lines[0]["error"]
    structlog.reset_defaults()
