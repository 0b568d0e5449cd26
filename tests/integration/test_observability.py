"""The sidecar's HTTP face, against a real broker and a real REST catalog over S3: /metrics agrees
with `tabletopic offsets show`, /readyz follows the catalog away and back, and a pool of two
workers reports through its parent's one port."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tabletopic.local.kafka import LocalKafka
from tabletopic.local.ports import free_port
from tabletopic.local.rest_catalog import LocalRestCatalog
from tabletopic.local.s3 import LocalS3
from tests.support import Writer, catalog_of, json_n, log_end, produce, wait_committed, writer_config

RECORDS = 20_000
PARTITIONS = 4


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def answered(url: str, status: int) -> bool:
    """Whether `url` answers `status` now; a connection the server cut (its answer took past the request
    timeout while a service went away) is "not yet"."""
    try:
        return get(url)[0] == status
    except OSError:
        return False


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    status, text = get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"not within {timeout}s: {what}")


@pytest.fixture
def own_rest_catalog(tmp_path: Path, s3: LocalS3) -> Iterator[LocalRestCatalog]:
    """A REST catalog of this test's own: the test stops and restarts it."""
    server = LocalRestCatalog(tmp_path / "rest", s3).start()
    yield server
    server.stop()


def test_metrics_match_offsets_show_and_readiness_follows_the_catalog(
    kafka: LocalKafka, own_rest_catalog: LocalRestCatalog, new_topic: Callable[..., str],
    spawn_writer: Callable[..., Writer], tmp_path: Path,
) -> None:
    topic = new_topic(PARTITIONS)
    table = "obs.events"
    port = free_port()
    config = writer_config(tmp_path / "config.yaml", kafka.bootstrap, topic, table, "unused",
                           catalog=own_rest_catalog.client_properties(), workers=2,
                           http={"enabled": True, "host": "127.0.0.1", "port": port})
    produce(kafka.bootstrap, topic, ((n % PARTITIONS, None, json_n(n), None) for n in range(RECORDS)))
    writer = spawn_writer(config)
    writer.wait_for("http.serving")
    wait_until(lambda: get(f"http://127.0.0.1:{port}/readyz")[0] == 200, 90, "/readyz 200 with both workers in")
    assert get(f"http://127.0.0.1:{port}/healthz") == (200, "ok\n")

    iceberg = catalog_of(config)
    wait_committed(iceberg, table, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), writer=writer)

    def lag_by_partition() -> dict[int, float]:
        return {int(labels["partition"]): value for labels, value in scrape(port)["tabletopic_consumer_lag_records"]
                if labels["table"] == table}

    # Each worker measures lag every 5 s; a partition a worker gave up reads 0 from it (merged: latest wins).
    wait_until(lambda: lag_by_partition() == dict.fromkeys(range(PARTITIONS), 0.0), 60, "lag 0 on every partition")

    shown = subprocess.run([sys.executable, "-m", "tabletopic", "offsets", "show", "--config", str(config),
                            "--table", table, "--output", "json"], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    rows = json.loads(shown.stdout)
    samples = scrape(port)
    committed = {int(labels["partition"]): value for labels, value in samples["tabletopic_committed_offset"]
                 if labels["table"] == table}
    assert committed == {r["partition"]: float(r["committed"]) for r in rows}
    assert {r["partition"]: r["lag"] for r in rows} == dict.fromkeys(range(PARTITIONS), 0)

    def total(name: str, **labels: str) -> float:
        return sum(v for lbl, v in samples.get(name, []) if all(lbl.get(k) == x for k, x in labels.items()))

    assert total("tabletopic_records_committed_total", table=table) == RECORDS
    assert total("tabletopic_records_consumed_total", table=table) >= RECORDS  # a rebalance may re-read some
    assert total("tabletopic_bytes_committed_total", table=table) > 0
    assert total("tabletopic_commit_duration_seconds_count", table=table) >= 1
    assert total("tabletopic_commits_total", table=table, outcome="committed") >= 1
    assert total("tabletopic_commit_files_count", table=table) >= 1
    assert total("tabletopic_rebalances_total", kind="assigned") >= 2
    assert total("tabletopic_buffer_bytes", table=table) == 0
    freshness = [v for lbl, v in samples["tabletopic_freshness_seconds"] if lbl["table"] == table]
    assert len(freshness) == 1 and 0 <= freshness[0] < 600

    # The catalog stops answering (frozen: a catalog killed in the middle of a commit leaves the test
    # server's SQLite file locked for good): not ready, with the reason, still alive; back: ready, writing.
    assert own_rest_catalog.process is not None
    os.kill(own_rest_catalog.process.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: get(f"http://127.0.0.1:{port}/readyz")[0] == 503, 30, "/readyz 503, catalog frozen")
        status, reason = get(f"http://127.0.0.1:{port}/readyz")
        assert status == 503 and reason.startswith("catalog unreachable"), reason
        assert get(f"http://127.0.0.1:{port}/healthz")[0] == 200
    finally:
        os.kill(own_rest_catalog.process.pid, signal.SIGCONT)
    wait_until(lambda: get(f"http://127.0.0.1:{port}/readyz")[0] == 200, 60, "/readyz 200 with the catalog back")
    produce(kafka.bootstrap, topic, ((n % PARTITIONS, None, json_n(n), None) for n in range(RECORDS, RECORDS + 400)))
    wait_committed(iceberg, table, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), writer=writer)
    assert writer.stop() == 0


def test_readyz_gives_a_generic_reason_and_no_secret_reaches_the_answers_or_the_log(
    kafka: LocalKafka, own_rest_catalog: LocalRestCatalog, new_topic: Callable[..., str],
    spawn_writer: Callable[..., Writer], tmp_path: Path,
) -> None:
    """The catalog's URL carries a credential (userinfo) and the catalog goes away: /readyz says which
    service, not the exception's text (hosts, URLs); the log has the details, masked; /metrics, /readyz
    and stderr never hold the credential."""
    topic = new_topic(1)
    port = free_port()
    token = "TOK" + os.urandom(6).hex()
    catalog = own_rest_catalog.client_properties()
    catalog["uri"] = catalog["uri"].replace("://", f"://tabletopic:{token}@", 1)
    config = writer_config(tmp_path / "config.yaml", kafka.bootstrap, topic, "obs.secret", "unused", catalog=catalog,
                           http={"enabled": True, "host": "127.0.0.1", "port": port})
    produce(kafka.bootstrap, topic, ((0, None, json_n(n), None) for n in range(100)))
    writer = spawn_writer(config)
    writer.wait_for("http.serving")
    wait_until(lambda: answered(f"http://127.0.0.1:{port}/readyz", 200), 90, "/readyz 200")
    # Ready can come before the first assignment, whose start offsets need the catalog: a catalog gone then
    # crashes the worker (a known gap, issue 21's catalog outages), which is not what this test is about.
    if not writer.named("kafka.assigned"):
        writer.wait_for("kafka.assigned", timeout=60)
    assert own_rest_catalog.process is not None
    own_rest_catalog.process.kill()  # refused connections from now on: an exception, with the catalog's URL
    own_rest_catalog.process.wait()
    try:
        wait_until(lambda: answered(f"http://127.0.0.1:{port}/readyz", 503), 60, "/readyz 503, catalog gone")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the writer's exit code {writer.process.poll()}\n{writer.log()}") from None
    status, reason = get(f"http://127.0.0.1:{port}/readyz")
    assert (status, reason) == (503, "catalog unreachable: ConnectionError; details in the log\n")
    status, metrics_text = get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    failed = writer.wait_for("probe.failed")
    assert failed["probe"] == "catalog" and "HTTPConnectionPool" in failed["error"]
    writer.kill()
    assert token not in reason + metrics_text + "\n".join(writer.stderr_text)
