"""A secured broker: the writer and the audit over SASL_SSL (SCRAM-SHA-512, TLS to a throwaway CA)
with the password from `${file:...}`, secrets never in the logs, a wrong password reported at once.

The broker is this module's own (`LocalKafka(secure=True)`); every client here talks to its
SASL_SSL listener only, never to the PLAINTEXT one it keeps beside it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from pyiceberg.catalog import Catalog

from tabletopic.catalog.loader import open_catalog
from tabletopic.commit.committer import table_offsets
from tabletopic.config import load_config
from tabletopic.local.kafka import LocalKafka
from tabletopic.local.rest_catalog import LocalRestCatalog
from tests.support import Writer, audit_cli, catalog_of, json_n, log_end, produce, wait_committed, writer_config

RECORDS = 5_000
PARTITIONS = 3
# Looks like an AWS secret key; the local SQLite catalog never uses it, but the config holds it.
S3_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + uuid.uuid4().hex[:10]
AUTH_REPORT_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    broker = LocalKafka(tmp_path_factory.mktemp("secure-kafka"), secure=True, mtls=True).start()
    yield broker
    broker.stop()


def create_secure_topic(kafka: LocalKafka, partitions: int) -> str:
    name = f"sec-{uuid.uuid4().hex[:10]}"
    admin = AdminClient(kafka.client_settings("sasl_ssl"))
    for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        future.result(timeout=30)
    return name


def produce_secure(kafka: LocalKafka, topic: str, count: int) -> dict[tuple[str, int], int]:
    """`{"n": 0..count-1}` over SASL_SSL; returns each partition's log end as the deliveries report it."""
    ends: dict[tuple[str, int], int] = {}
    failures: list[KafkaError] = []

    def delivered(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            failures.append(error)
            return
        tp = (message.topic(), message.partition())
        ends[tp] = max(ends.get(tp, 0), message.offset() + 1)

    producer = Producer({**kafka.client_settings("sasl_ssl"), "linger.ms": 10, "enable.idempotence": True})
    for n in range(count):
        while True:
            try:
                producer.produce(topic, value=json_n(n), on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(60) == 0
    assert not failures, failures[:3]
    assert sum(ends.values()) == count
    return ends


def secured_config(
    path: Path, kafka: LocalKafka, topic: str, table: str, password_file: Path, warehouse: Path, **overrides: Any
) -> Path:
    """The writer's config: SASL_SSL with the password by reference, an S3 secret in the catalog, debug logs.
    librdkafka's own debug output (security and conf) is on too: it goes to stderr unmasked by tabletopic."""
    return writer_config(
        path, kafka.secure_bootstrap, topic, table, warehouse,
        kafka={
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": kafka.sasl_username,
            "sasl.password": f"${{file:{password_file}}}",
            "ssl.ca.location": str(kafka.ca_pem_path),
            "debug": "security,conf",
        },
        catalog={
            "warehouse": str(warehouse), "s3.access-key-id": "AKIATABLETOPICTEST", "s3.secret-access-key": S3_SECRET,
        },
        log_level="debug",
        **overrides,
    )


def test_writer_and_audit_over_sasl_ssl_keep_secrets_out_of_logs(secure_kafka, spawn_writer, tmp_path):
    topic = create_secure_topic(secure_kafka, PARTITIONS)
    table = "sec.events"
    ends = produce_secure(secure_kafka, topic, RECORDS)

    password_file = tmp_path / "kafka-password"
    password_file.write_text(secure_kafka.sasl_password + "\n")  # as a Kubernetes Secret file or `echo` leaves it
    config = secured_config(tmp_path / "c.yaml", secure_kafka, topic, table, password_file, tmp_path / "warehouse")
    assert secure_kafka.sasl_password not in config.read_text()

    writer = spawn_writer(config)
    iceberg = catalog_of(config)
    wait_committed(iceberg, table, "tests", ends, writer=writer)
    assert writer.stop() == 0

    values = iceberg.load_table(table).scan(selected_fields=("n",)).to_arrow()["n"].to_pylist()
    assert len(values) == RECORDS
    assert sorted(values) == list(range(RECORDS))
    audit = audit_cli(config, topic, table)  # the audit reads the offsets over SASL_SSL too
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert "audit: OK" in audit.stdout

    stderr = "\n".join(writer.stderr_text)
    # The writer did talk SASL_SSL and did log: the checks below are not vacuous.
    assert writer.named("kafka.assigned")
    assert "sasl.password = [redacted]" in stderr  # librdkafka's conf dump, now through structlog
    assert "SCRAM" in stderr
    for secret in (secure_kafka.sasl_password, S3_SECRET):
        assert secret not in stderr
        assert secret not in audit.stdout + audit.stderr


def test_wrong_password_is_reported_not_silent(secure_kafka, spawn_writer, tmp_path):
    topic = create_secure_topic(secure_kafka, 1)
    wrong = "wrong-" + uuid.uuid4().hex
    password_file = tmp_path / "kafka-password"
    password_file.write_text(wrong)
    config = secured_config(tmp_path / "c.yaml", secure_kafka, topic, "sec.denied", password_file, tmp_path / "wh")

    writer = spawn_writer(config)
    # Wrong credentials do not fix themselves: the writer says so and exits 2 (configuration), so
    # Kubernetes shows a crash loop instead of a pod that looks alive and writes nothing.
    assert writer.wait_exit(timeout=AUTH_REPORT_TIMEOUT_S) == 2, writer.log()
    assert auth_report(writer) is not None, writer.log()
    assert writer.named("kafka.authentication_failed"), writer.log()

    stderr = "\n".join(writer.stderr_text)
    assert wrong not in stderr
    assert S3_SECRET not in stderr
    iceberg = catalog_of(config)
    assert not iceberg.table_exists("sec.denied") or not table_offsets(iceberg.load_table("sec.denied"), "tests")


def auth_report(writer: Writer) -> dict[str, Any] | None:
    """The writer's first structured line (a warning or worse) that names an authentication failure."""
    return next(
        (e for e in list(writer.events)
         if e.get("level") in ("warning", "error", "critical") and "authentication" in json.dumps(e).lower()),
        None,
    )


def test_writer_over_mtls_into_a_rest_catalog_with_oauth2_client_credentials(
    secure_kafka: LocalKafka, rest_catalog: LocalRestCatalog, spawn_writer: Callable[..., Writer], tmp_path: Path,
) -> None:
    """mTLS to Kafka (a client certificate, no password), and the REST catalog's OAuth2 client-credentials
    flow (pyiceberg asks the catalog's token endpoint for a token with `credential`, then sends it)."""
    topic = create_secure_topic(secure_kafka, PARTITIONS)
    table = "sec.mtls"
    ends = produce_secure(secure_kafka, topic, 2_000)
    client_secret = "oauth-" + uuid.uuid4().hex
    config = writer_config(
        tmp_path / "c.yaml", secure_kafka.mtls_bootstrap, topic, table, "unused",
        kafka={k: v for k, v in secure_kafka.client_settings("mtls").items() if k != "bootstrap.servers"},
        catalog={**rest_catalog.client_properties(), "credential": "tabletopic:${env:CATALOG_CLIENT_SECRET}",
                 "oauth2-server-uri": f"{rest_catalog.uri}/v1/oauth/tokens", "scope": "catalog"},
        log_level="debug",
    )
    env = {"CATALOG_CLIENT_SECRET": client_secret}
    writer = spawn_writer(config, env)
    iceberg = catalog_of_env(config, env)
    wait_committed(iceberg, table, "tests", ends, writer=writer)
    assert writer.stop() == 0
    values = iceberg.load_table(table).scan(selected_fields=("n",)).to_arrow()["n"].to_pylist()
    assert sorted(values) == list(range(2_000))
    assert writer.named("kafka.assigned")
    assert client_secret not in "\n".join(writer.stderr_text)


def catalog_of_env(config: Path, env: dict[str, str]) -> Catalog:
    return open_catalog(load_config(config, environ=env).catalog)


def test_library_log_lines_go_through_the_masking_pipeline(kafka, s3, new_topic, spawn_writer, tmp_path):
    """botocore's own lines (here through s3fs, pyiceberg's other FileIO, at debug level) are JSON lines of
    the same pipeline: the access key id in the request's Authorization header, a secret because the config
    takes it from a variable, is masked; so is the secret key."""
    topic = new_topic(2)
    key_id, secret = f"AKIA{uuid.uuid4().hex[:16].upper()}", "s3-" + uuid.uuid4().hex
    s3.create_bucket(bucket := f"sec-{uuid.uuid4().hex[:8]}")
    config = writer_config(
        tmp_path / "c.yaml", kafka.bootstrap, topic, "sec.libs", "",
        catalog={**s3.catalog_properties(), "uri": f"sqlite:///{tmp_path}/catalog.db",
                 "warehouse": f"s3://{bucket}/wh", "py-io-impl": "pyiceberg.io.fsspec.FsspecFileIO",
                 "s3.access-key-id": "${env:TEST_S3_KEY_ID}", "s3.secret-access-key": "${env:TEST_S3_SECRET}"},
        log_level="debug",
    )
    env = {"TEST_S3_KEY_ID": key_id, "TEST_S3_SECRET": secret}
    produce(kafka.bootstrap, topic, ((None, None, json_n(n), None) for n in range(200)))
    writer = spawn_writer(config, env)
    wait_committed(catalog_of_env(config, env), "sec.libs", "tests", log_end(kafka.bootstrap, topic, 2),
                   writer=writer)
    assert writer.stop() == 0, writer.log()

    stderr = "\n".join(writer.stderr_text)
    assert key_id not in stderr and secret not in stderr
    from_botocore = [e for e in writer.events if str(e.get("logger", "")).startswith("botocore")]
    assert from_botocore, writer.log()  # rendered as JSON lines, with level, logger and timestamp
    assert all({"level", "timestamp", "event"} <= set(e) for e in from_botocore)
    signed = [e for e in from_botocore if "Credential=" in str(e["event"])]
    assert signed and all("Credential=***/" in str(e["event"]) for e in signed), signed[:1]


def test_the_local_catalog_and_warehouse_are_private_to_the_user(kafka, new_topic, spawn_writer, tmp_path):
    """umask 077 at the CLI's start: the SQLite catalog (with its offsets) and every data and metadata file
    of the local warehouse are 0600, their folders 0700, whatever the umask of the shell that started it."""
    topic = new_topic(2)
    warehouse = tmp_path / "wh"
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, "priv.events", warehouse)
    produce(kafka.bootstrap, topic, ((None, None, json_n(n), None) for n in range(50)))
    shells = os.umask(0o022)  # the writer inherits the usual umask of a shell
    try:
        writer = spawn_writer(config)
    finally:
        os.umask(shells)
    writer.wait_for("service.started")  # the writer made the catalog: this process only opens it after
    wait_committed(catalog_of(config), "priv.events", "tests", log_end(kafka.bootstrap, topic, 2), writer=writer)
    assert writer.stop() == 0, writer.log()
    made = [warehouse, *warehouse.rglob("*")]
    assert (warehouse / "catalog.db").is_file() and any(p.suffix == ".parquet" for p in made)
    loose = {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777) for p in made if p.stat().st_mode & 0o077}
    assert not loose


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(c) for c in text.split()]


def _gone(pid: int) -> bool:
    """Exited: no such process, or a zombie nobody reaps (its new parent may not be a reaper)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_backfill_workers_die_with_their_parent_even_by_kill_9(kafka, new_topic, tmp_path):
    topic = new_topic(2)
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, "orphan.events", tmp_path / "wh")
    produce(kafka.bootstrap, topic, ((n % 2, None, json_n(n), None) for n in range(200)))
    out = tmp_path / "backfill.out"
    with out.open("w") as stdout:
        parent = subprocess.Popen([sys.executable, "-m", "tabletopic", "backfill", "--config", str(config),
                                   "--topic", topic, "--table", "orphan.events", "--into", "orphan.copy",
                                   "--from-offset", "0", "--workers", "2"], stdout=stdout, stderr=subprocess.STDOUT)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while len(workers) < 2 and parent.poll() is None and time.monotonic() < deadline:
            workers = _children(parent.pid)
            time.sleep(0.01)
        assert len(workers) == 2, out.read_text()
        for worker in workers:  # held still, so none can finish its share before its parent is gone
            os.kill(worker, signal.SIGSTOP)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    finally:
        for worker in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGCONT)
    deadline = time.monotonic() + 60
    while not all(_gone(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        assert all(_gone(w) for w in workers), out.read_text()
        assert "backfill done" not in out.read_text()  # stopped by the signal, not by finishing their shares
    finally:
        for worker in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGKILL)
