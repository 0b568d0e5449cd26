"""Real services for the integration and engine tests, one of each per session, started on first use:
a Kafka broker, a Schema Registry, an S3 server and a REST catalog over it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tabletopic.local.kafka import LocalKafka
from tabletopic.local.registry import LocalRegistry
from tabletopic.local.rest_catalog import LocalRestCatalog
from tabletopic.local.s3 import LocalS3
from tabletopic.local.topics import create_topic
from tabletopic.local.trino import LocalTrino
from tests.support import Writer

# The CDC stack's session fixtures (`postgres`, `debezium_connect`), started only by the tests that use them.
pytest_plugins = ["tests.cdc_stack"]

# A loaded machine (the suite runs in two processes) must not fail a property test on its clock.
settings.register_profile("suite", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("suite")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
        if "/compat/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
        if "/engines/" in str(item.fspath):
            item.add_marker(pytest.mark.engines)


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    # fetch() fails with the apt-get command to run when Java or Maven is missing.
    broker = LocalKafka(tmp_path_factory.mktemp("kafka")).start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    server = LocalRegistry(tmp_path_factory.mktemp("registry")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalS3]:
    server = LocalS3(tmp_path_factory.mktemp("s3")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def rest_catalog(tmp_path_factory: pytest.TempPathFactory, s3: LocalS3) -> Iterator[LocalRestCatalog]:
    server = LocalRestCatalog(tmp_path_factory.mktemp("rest"), s3).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def trino_server(rest_catalog: LocalRestCatalog, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTrino]:
    server = LocalTrino(tmp_path_factory.mktemp("trino"), rest_catalog).start()
    _wait_until_queryable(server)
    yield server
    server.stop()


def _wait_until_queryable(server: LocalTrino, timeout_s: float = 120.0) -> None:
    """/v1/info says started before the node can run queries; a real query is the test."""
    from trino.dbapi import connect
    from trino.exceptions import TrinoQueryError

    deadline = time.monotonic() + timeout_s
    while True:
        connection = connect(host="127.0.0.1", port=server.port, user="tests")
        try:
            connection.cursor().execute("SELECT 1").fetchall()
            return
        except TrinoQueryError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
        finally:
            connection.close()


@pytest.fixture
def spawn_writer() -> Iterator[Callable[..., Writer]]:
    """Start `tabletopic run` processes; any still running at the end of the test is killed."""
    started: list[Writer] = []

    def spawn(config_path: Path, env: dict[str, str] | None = None) -> Writer:
        writer = Writer(config_path, env)
        started.append(writer)
        return writer

    yield spawn
    for writer in started:
        writer.kill()


@pytest.fixture
def new_topic(kafka: LocalKafka) -> Callable[..., str]:
    def make(partitions: int = 4, prefix: str = "t") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        create_topic(kafka.bootstrap, name, partitions)
        return name

    return make
