"""A standalone Hive Metastore (Hive 3.1.3 on Derby, tabletopic/local/hive_metastore.py) through pyiceberg's Hive
catalog (`type: hive`).

The compare-and-swap is a metastore lock: pyiceberg takes the table's exclusive lock, reads the table's current
metadata location, checks the commit's requirements against it (a stale commit fails with CommitFailedException,
which tabletopic retries as a conflict), alters the table and unlocks. A writer killed between lock and unlock
leaves the lock behind until the metastore's housekeeper times it out (`metastore.txn.timeout`); meanwhile the
other writers' commits fail with CommitFailedException ("Failed to acquire lock") and are retried, never doubled.

Spark (Iceberg's HiveCatalog on the Hive 2.3 client pyspark ships) and Trino (`hive_metastore`) read the tables
through the same metastore.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest

from tabletopic.local.hive_metastore import LocalHiveMetastore
from tabletopic.local.s3 import ACCESS_KEY, REGION, SECRET_KEY, LocalS3
from tabletopic.local.trino import LocalTrino
from tests.compat import harness
from tests.compat.harness import LakeUnderTest
from tests.compat.spark_query import run_spark_sql
from tests.compat.trino_query import add_catalog, s3_properties, trino_sql
from tests.support import Writer, catalog_of, writer_config

CATALOG_NAME = "hive"  # the Spark catalog's name too
TRINO_CATALOG = "hive_metastore"


@pytest.fixture(scope="module")
def metastore(tmp_path_factory: pytest.TempPathFactory, s3: LocalS3) -> Iterator[LocalHiveMetastore]:
    # fetch() (in start) fails with the command to run when Java or Maven is missing.
    server = LocalHiveMetastore(tmp_path_factory.mktemp("hive"), s3, bucket="hive-metastore").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def lake(metastore: LocalHiveMetastore) -> LakeUnderTest:
    return LakeUnderTest("hive", {"name": CATALOG_NAME, **metastore.client_properties()}, pause=metastore.paused)


@pytest.fixture(scope="module")
def written() -> dict[str, str]:
    """The tables the scenarios wrote, for the engines test."""
    return {}


def test_round_trip(lake: LakeUnderTest, kafka: Any, new_topic: Callable[..., str],
                    spawn_writer: Callable[..., Writer], tmp_path: Path, written: dict[str, str]) -> None:
    written["round_trip"] = harness.round_trip(lake, kafka, new_topic, spawn_writer, tmp_path)


def test_kill_9_chaos(lake: LakeUnderTest, kafka: Any, new_topic: Callable[..., str],
                      spawn_writer: Callable[..., Writer], tmp_path: Path, written: dict[str, str]) -> None:
    written["kill_9_chaos"] = harness.kill_9_chaos(lake, kafka, new_topic, spawn_writer, tmp_path)


def test_writers_race(lake: LakeUnderTest, kafka: Any, new_topic: Callable[..., str],
                      spawn_writer: Callable[..., Writer], tmp_path: Path) -> None:
    harness.writers_race(lake, kafka, new_topic, spawn_writer, tmp_path)


def test_outage(lake: LakeUnderTest, kafka: Any, new_topic: Callable[..., str],
                spawn_writer: Callable[..., Writer], tmp_path: Path) -> None:
    harness.outage(lake, kafka, new_topic, spawn_writer, tmp_path)


def test_spark_and_trino_read_through_the_same_metastore(
        lake: LakeUnderTest, metastore: LocalHiveMetastore, s3: LocalS3, trino_server: LocalTrino, kafka: Any,
        new_topic: Callable[..., str], spawn_writer: Callable[..., Writer], tmp_path: Path,
        written: dict[str, str]) -> None:
    table = written.get("kill_9_chaos") or harness.round_trip(lake, kafka, new_topic, spawn_writer, tmp_path)
    iceberg = catalog_of(writer_config(tmp_path / "read.yaml", kafka.bootstrap, "unused", table, "",
                                       catalog=dict(lake.catalog)))
    rows = iceberg.load_table(table).scan().to_arrow()
    expected = [rows.num_rows, pc.count_distinct(rows["n"]).as_py()]

    add_catalog(trino_server, TRINO_CATALOG, {
        "iceberg.catalog.type": "hive_metastore",
        "hive.metastore.uri": metastore.uri,
        **s3_properties(s3.endpoint),
    })
    assert trino_sql(trino_server, f"SELECT count(*), count(DISTINCT n) FROM {TRINO_CATALOG}.{table}") == [expected]

    # pyspark's own jars hold the Hive 2.3 metastore client Iceberg's HiveCatalog needs: no extra jar.
    assert run_spark_sql(spark_conf(metastore.uri, s3.endpoint), [],
                         f"SELECT count(*), count(DISTINCT n) FROM {CATALOG_NAME}.{table}") == [expected]


def spark_conf(uri: str, s3_endpoint: str) -> dict[str, str]:
    prefix = f"spark.sql.catalog.{CATALOG_NAME}"
    return {
        prefix: "org.apache.iceberg.spark.SparkCatalog",
        f"{prefix}.type": "hive",
        f"{prefix}.uri": uri,
        f"{prefix}.io-impl": "org.apache.iceberg.aws.s3.S3FileIO",
        f"{prefix}.s3.endpoint": s3_endpoint,
        f"{prefix}.s3.path-style-access": "true",
        f"{prefix}.s3.access-key-id": ACCESS_KEY,
        f"{prefix}.s3.secret-access-key": SECRET_KEY,
        f"{prefix}.client.region": REGION,
    }
