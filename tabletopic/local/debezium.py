"""Debezium's PostgreSQL connector as a Kafka Connect plugin, from Maven Central, for the CDC tests.

`fetch` copies the ready plugin archive (`io.debezium:debezium-connector-postgres:<v>:tar.gz:plugin`) with
`mvn dependency:copy` and unpacks it into the cache, once. The folder it returns is a Connect `plugin.path`.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from pathlib import Path

from tabletopic.local.jvm import cache_root, maven

DEBEZIUM_VERSION = "3.6.1.Final"
CONNECTOR_CLASS = "io.debezium.connector.postgresql.PostgresConnector"
PLUGIN_FOLDER = "debezium-connector-postgres"
# The archive bundles the Kafka client and Connect API it was built against (4.3). The worker's own (the
# project's Kafka version) must be the only ones: Connect loads org.apache.kafka.* from the worker anyway.
_BUNDLED_KAFKA = ("connect-api-*.jar", "kafka-clients-*.jar")


def home() -> Path:
    """The `plugin.path` folder: it holds `debezium-connector-postgres/` and nothing else."""
    return cache_root() / f"debezium-postgres-{DEBEZIUM_VERSION}"


def fetch() -> Path:
    """Download and unpack the plugin (a no-op when it is there); the `plugin.path` folder."""
    target = home()
    if (target / PLUGIN_FOLDER).is_dir():
        return target
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as work:
        artifact = f"io.debezium:debezium-connector-postgres:{DEBEZIUM_VERSION}:tar.gz:plugin"
        # `dependency:get` fails here: it resolves the connector's whole optional tree; the archive is one file.
        maven("dependency:copy", f"-Dartifact={artifact}", f"-DoutputDirectory={work}")
        (archive,) = Path(work).glob("*.tar.gz")
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")
    for pattern in _BUNDLED_KAFKA:
        for jar in (staging / PLUGIN_FOLDER).glob(pattern):
            jar.unlink()
    staging.rename(target)
    return target
