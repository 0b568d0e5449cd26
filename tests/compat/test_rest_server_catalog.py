"""A production REST catalog server, Project Nessie (its Quarkus server from Maven Central), through pyiceberg's
REST catalog, its warehouse on the session's moto S3 server (a bucket of its own).

Why Nessie: of the four servers the issue names, it is the one Maven Central serves as a runnable build
(`nessie-quarkus:<v>:runner`, an uber-jar). Polaris publishes `polaris-runtime-service` only as a plain
Quarkus jar (no runner: it would need the Quarkus build step), Gravitino's Iceberg REST server is not on
Maven Central, and Lakekeeper is not on crates.io.

Nessie commits by compare-and-swap on its `main` branch and answers a stale commit with 409; it keeps only
the current snapshot in the Iceberg metadata it serves (history lives in its own commits).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest

from tabletopic.local import nessie as local_nessie
from tabletopic.local.nessie import LocalNessie
from tabletopic.local.s3 import ACCESS_KEY, REGION, SECRET_KEY, LocalS3
from tabletopic.local.trino import LocalTrino
from tests.compat import harness
from tests.compat.harness import LakeUnderTest
from tests.compat.spark_query import run_spark_sql
from tests.compat.trino_query import add_catalog, s3_properties, trino_sql
from tests.support import (
    Writer,
    assert_exactly_once,
    catalog_of,
    json_n,
    log_end,
    produce,
    wait_committed,
    writer_config,
)

CATALOG_NAME = "nessie"  # the Spark and Trino catalogs' name


@pytest.fixture(scope="module")
def nessie(tmp_path_factory: pytest.TempPathFactory, s3: LocalS3) -> Iterator[LocalNessie]:
    if not local_nessie.runner_jar().exists():  # ~250 MB: fetched by the setup, not by a test
        pytest.fail("Nessie's server is missing: .venv/bin/python -c 'from tabletopic.local import nessie; "
                    "nessie.fetch()'")
    server = LocalNessie(tmp_path_factory.mktemp("nessie"), s3, bucket=f"nessie-{uuid.uuid4().hex[:8]}").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def lake(nessie: LocalNessie) -> LakeUnderTest:
    return LakeUnderTest("nessie", nessie.client_properties(), pause=nessie.paused)


@pytest.fixture(scope="module")
def written() -> dict[str, str]:
    """The tables the scenarios wrote, for the engines test."""
    return {}


def test_round_trip(lake: LakeUnderTest, kafka: Any, new_topic: Callable[..., str],
                    spawn_writer: Callable[..., Writer], tmp_path: Path, written: dict[str, str]) -> None:
    written["round_trip"] = harness.round_trip(lake, kafka, new_topic, spawn_writer, tmp_path)


def test_kill_9_chaos(lake: LakeUnderTest, kafka: Any, new_topic: Callable[..., str],
                      spawn_writer: Callable[..., Writer], tmp_path: Path, written: dict[str, str]) -> None:
    # Nessie serves no parent snapshots: a compaction a writer's commit overtook gives up (docs/compatibility.md).
    written["kill_9_chaos"] = harness.kill_9_chaos(lake, kafka, new_topic, spawn_writer, tmp_path,
                                                   compactions_may_give_up=True)


def test_writers_race(lake: LakeUnderTest, kafka: Any, new_topic: Callable[..., str],
                      spawn_writer: Callable[..., Writer], tmp_path: Path) -> None:
    harness.writers_race(lake, kafka, new_topic, spawn_writer, tmp_path)


def test_outage(lake: LakeUnderTest, kafka: Any, new_topic: Callable[..., str],
                spawn_writer: Callable[..., Writer], tmp_path: Path) -> None:
    harness.outage(lake, kafka, new_topic, spawn_writer, tmp_path)


def test_spark_and_trino_read_through_the_same_server(
        lake: LakeUnderTest, nessie: LocalNessie, s3: LocalS3, trino_server: LocalTrino, kafka: Any,
        new_topic: Callable[..., str], spawn_writer: Callable[..., Writer], tmp_path: Path,
        written: dict[str, str]) -> None:
    # The round trip's table (chaos is an expected failure here); read before the compaction test appends to it.
    table = written.get("round_trip") or harness.round_trip(lake, kafka, new_topic, spawn_writer, tmp_path)
    iceberg = catalog_of(writer_config(tmp_path / "read.yaml", kafka.bootstrap, "unused", table, "",
                                       catalog=dict(lake.catalog)))
    rows = iceberg.load_table(table).scan().to_arrow()
    expected = [rows.num_rows, pc.count_distinct(rows["n"]).as_py()]

    add_catalog(trino_server, CATALOG_NAME, {
        "iceberg.catalog.type": "rest",
        "iceberg.rest-catalog.uri": nessie.uri,
        "iceberg.rest-catalog.warehouse": local_nessie.WAREHOUSE,
        **s3_properties(s3.endpoint),
    })
    assert trino_sql(trino_server, f"SELECT count(*), count(DISTINCT n) FROM {CATALOG_NAME}.{table}") == [expected]

    spark = spark_conf(nessie.uri, s3.endpoint)
    assert run_spark_sql(spark, [], f"SELECT count(*), count(DISTINCT n) FROM {CATALOG_NAME}.{table}") == [expected]


def spark_conf(uri: str, s3_endpoint: str) -> dict[str, str]:
    prefix = f"spark.sql.catalog.{CATALOG_NAME}"
    return {
        prefix: "org.apache.iceberg.spark.SparkCatalog",
        f"{prefix}.type": "rest",
        f"{prefix}.uri": uri,
        f"{prefix}.warehouse": local_nessie.WAREHOUSE,
        f"{prefix}.io-impl": "org.apache.iceberg.aws.s3.S3FileIO",
        f"{prefix}.s3.endpoint": s3_endpoint,
        f"{prefix}.s3.path-style-access": "true",
        f"{prefix}.s3.access-key-id": ACCESS_KEY,
        f"{prefix}.s3.secret-access-key": SECRET_KEY,
        f"{prefix}.client.region": REGION,
    }



def test_committed_offsets_survive_a_compaction(
        lake: LakeUnderTest, kafka: Any, new_topic: Callable[..., str], spawn_writer: Callable[..., Writer],
        tmp_path: Path, written: dict[str, str]) -> None:
    table = written.get("round_trip") or harness.round_trip(lake, kafka, new_topic, spawn_writer, tmp_path)
    iceberg = catalog_of(writer_config(tmp_path / "probe.yaml", kafka.bootstrap, "unused", table, "",
                                       catalog=dict(lake.catalog)))
    snapshot = iceberg.load_table(table).current_snapshot()
    assert snapshot is not None and snapshot.summary is not None
    [topic] = json.loads(snapshot.summary.additional_properties[f"tabletopic.topic-ids.{harness.GROUP}"])
    config = writer_config(tmp_path / "after_compaction.yaml", kafka.bootstrap, topic, table, "",
                           catalog=dict(lake.catalog))
    compaction = subprocess.run([sys.executable, "-m", "tabletopic", "compact", "--config", str(config),
                                 "--table", table], capture_output=True, text=True, timeout=120)
    assert compaction.returncode == 0, compaction.stderr[-2000:]
    more = range(harness.ROUND_TRIP_RECORDS, harness.ROUND_TRIP_RECORDS + 1000)
    produce(kafka.bootstrap, topic, ((None, None, json_n(n), None) for n in more))
    writer = spawn_writer(config)
    wait_committed(iceberg, table, harness.GROUP, log_end(kafka.bootstrap, topic, harness.PARTITIONS),
                   writer=writer)
    assert writer.stop() == 0, writer.log()
    assert_exactly_once(iceberg, config, topic, table, more.stop)
