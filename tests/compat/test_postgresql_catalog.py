"""The SQL catalog on PostgreSQL (Debian's package) instead of SQLite: pyiceberg's SqlCatalog through psycopg 3.

The compare-and-swap is pyiceberg's `UPDATE iceberg_tables SET metadata_location = new ... WHERE ... AND
metadata_location = old` at READ COMMITTED: a second UPDATE of the row waits for the first to commit, then
re-checks its WHERE on the new row version, matches nothing and fails the commit (the writers race proves it).

Spark (Iceberg's JdbcCatalog) and Trino (its JDBC catalog) read the tables through the same database. Both name
the catalog's rows by `catalog_name`: Spark's JdbcCatalog takes it from the Spark catalog's own name, so the
tabletopic catalog is named like the Spark catalog.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table

from tabletopic.local import postgres as local_postgres
from tabletopic.local.postgres import LocalPostgres, children_of, is_running
from tabletopic.local.s3 import ACCESS_KEY, REGION, SECRET_KEY, LocalS3
from tabletopic.local.trino import LocalTrino
from tests.compat import harness
from tests.compat.harness import LakeUnderTest, stopped
from tests.compat.spark_query import run_spark_sql
from tests.compat.trino_query import add_catalog, s3_properties, trino_sql
from tests.support import Writer, catalog_of, writer_config

CATALOG_NAME = "pg"  # tabletopic's catalog name = the rows' catalog_name = the Spark catalog's name
TRINO_CATALOG = "postgresql"
# A new connection to a server that does not answer fails after this long instead of waiting for it.
CONNECT_TIMEOUT_S = 5
BACKEND_EXIT_TIMEOUT_S = 10.0


@pytest.fixture(scope="module")
def catalog_database(postgres: LocalPostgres) -> str:
    """A database of its own on the session's PostgreSQL (the CDC tests use `postgres`)."""
    return postgres.create_database(f"catalog_{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def lake(postgres: LocalPostgres, catalog_database: str, s3: LocalS3) -> LakeUnderTest:
    bucket = f"pg-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(bucket)
    catalog = {
        "name": CATALOG_NAME,
        "type": "sql",
        "uri": postgres.sqlalchemy_uri(catalog_database, connect_timeout=str(CONNECT_TIMEOUT_S)),
        "warehouse": f"s3://{bucket}/wh",
        **s3.catalog_properties(),
    }
    return LakeUnderTest("postgresql", catalog, pause=lambda: gone_away(postgres, catalog_database))


@contextlib.contextmanager
def gone_away(server: LocalPostgres, database: str) -> Iterator[None]:
    """PostgreSQL as in a failover to a primary that does not answer yet: the catalog's open connections are
    dropped and no new one is answered until the end.

    Stopping the postmaster alone leaves the open connections' backends serving them, and stopping those too
    leaves their sockets open (the kernel still acknowledges what is sent), so a pooled connection would just
    wait out the outage without a word. So: the postmaster stopped (no new backend), the catalog's backends
    terminated (pg_terminate_backend's SIGTERM) before anything they may wait on is stopped, then every other
    process of the server stopped.
    """
    postmaster, *_ = server.server_pids()
    with stopped(postmaster):
        dropped = server.client_backends(database)
        for pid in dropped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + BACKEND_EXIT_TIMEOUT_S
        while any(is_running(pid) for pid in dropped):
            assert time.monotonic() < deadline, f"backends {dropped} did not exit on SIGTERM"
            time.sleep(0.05)
        with stopped(*children_of(postmaster)):
            yield


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
    spawned: list[Writer] = []

    def spawn(config_path: Path, env: dict[str, str] | None = None) -> Writer:
        spawned.append(spawn_writer(config_path, env))
        return spawned[-1]

    harness.outage(lake, kafka, new_topic, spawn, tmp_path)
    # The writer met the outage (its commits failed and were retried), not a server that still answered.
    said = [event for writer in spawned for event in writer.events if event.get("event") in harness.OUTAGE_EVENTS]
    assert said, spawned[0].log()


def test_compare_and_swap_holds_at_read_committed(lake: LakeUnderTest, postgres: LocalPostgres,
                                                  catalog_database: str, tmp_path: Path) -> None:
    """pyiceberg's conditional UPDATE against another commit of the same table still in flight: it waits for that
    one's row lock, then re-reads the row, matches nothing, and the commit fails instead of overwriting it."""
    iceberg = open_lake(lake, tmp_path)
    namespace = f"cas_{uuid.uuid4().hex[:8]}"
    iceberg.create_namespace(namespace)
    # pyiceberg would otherwise retry on a new base by itself (tabletopic's tables have it at 0 too).
    table = iceberg.create_table(f"{namespace}.t", pa.schema([("n", pa.int64())]),
                                 properties={"commit.retry.num-retries": "0"})
    base = table.metadata_location
    assert postgres.psql("SHOW default_transaction_isolation", catalog_database).strip() == "read committed"
    other = psycopg.connect(host=postgres.host, port=postgres.port, user=postgres.user, dbname=catalog_database)
    try:
        moved = other.execute(  # the other writer's commit: row updated, its transaction not committed yet
            "UPDATE iceberg_tables SET metadata_location = %s, previous_metadata_location = %s"
            " WHERE catalog_name = %s AND table_namespace = %s AND table_name = 't' AND metadata_location = %s",
            (f"{base}.other", base, CATALOG_NAME, namespace, base)).rowcount
        assert moved == 1
        failures: list[BaseException] = []
        ours = threading.Thread(target=append_catching, args=(table, failures))
        ours.start()
        wait_for_lock_wait(postgres, catalog_database, ours)
        other.commit()
        ours.join(timeout=60)
        assert not ours.is_alive()
    finally:
        other.close()
    assert len(failures) == 1 and isinstance(failures[0], CommitFailedException), failures
    location = postgres.psql(f"SELECT metadata_location FROM iceberg_tables WHERE table_namespace = '{namespace}'",
                             catalog_database).strip()
    assert location == f"{base}.other"  # the other writer's commit stands


def append_catching(table: Table, failures: list[BaseException]) -> None:
    try:
        table.append(pa.table({"n": [1]}))
    except Exception as exc:
        failures.append(exc)


def wait_for_lock_wait(server: LocalPostgres, database: str, thread: threading.Thread, timeout_s: float = 60) -> None:
    """Until a backend of `database` waits on a lock (our UPDATE behind the other's row lock)."""
    deadline = time.monotonic() + timeout_s
    sql = f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}' AND wait_event_type = 'Lock'"
    while server.psql(sql, database).strip() == "0":
        assert thread.is_alive(), "the append ended without waiting for the other commit"
        assert time.monotonic() < deadline, "the append never waited on the other commit's row lock"
        time.sleep(0.05)


def open_lake(lake: LakeUnderTest, tmp_path: Path) -> Catalog:
    """pyiceberg's catalog as tabletopic opens it from the lake's `catalog:` section."""
    return catalog_of(writer_config(tmp_path / "catalog.yaml", "127.0.0.1:9", "unused", "unused.unused", "",
                                    catalog=dict(lake.catalog)))


def test_spark_and_trino_read_through_the_same_database(
        lake: LakeUnderTest, postgres: LocalPostgres, catalog_database: str, s3: LocalS3, trino_server: LocalTrino,
        kafka: Any, new_topic: Callable[..., str], spawn_writer: Callable[..., Writer], tmp_path: Path,
        written: dict[str, str]) -> None:
    jars = [local_postgres.jdbc_driver()]
    assert jars[0].exists(), ("PostgreSQL's JDBC driver is missing: .venv/bin/python -c 'from tabletopic.local "
                              "import postgres; postgres.fetch_jdbc_driver()'")
    table = written.get("kill_9_chaos") or harness.round_trip(lake, kafka, new_topic, spawn_writer, tmp_path)
    iceberg = open_lake(lake, tmp_path)
    rows = iceberg.load_table(table).scan().to_arrow()
    expected = [rows.num_rows, pc.count_distinct(rows["n"]).as_py()]
    layout_before = catalog_layout(postgres, catalog_database)
    # pyiceberg made the tables with Java's V1 layout (views need `iceberg_type`): Java finds the column and
    # neither migrates nor warns; a catalog made by Java first (V0) is used by pyiceberg in its v0 mode.
    assert "iceberg_tables|iceberg_type|character varying|5|YES" in layout_before

    warehouse = lake.catalog["warehouse"]
    add_catalog(trino_server, TRINO_CATALOG, {
        "iceberg.catalog.type": "jdbc",
        "iceberg.jdbc-catalog.driver-class": "org.postgresql.Driver",
        "iceberg.jdbc-catalog.connection-url": postgres.jdbc_url(catalog_database),
        "iceberg.jdbc-catalog.connection-user": postgres.user,
        "iceberg.jdbc-catalog.catalog-name": CATALOG_NAME,
        "iceberg.jdbc-catalog.default-warehouse-dir": warehouse,
        **s3_properties(s3.endpoint),
    })
    assert trino_sql(trino_server, f"SELECT count(*), count(DISTINCT n) FROM {TRINO_CATALOG}.{table}") == [expected]

    spark = spark_conf(postgres.jdbc_url(catalog_database), postgres.user, warehouse, s3.endpoint)
    assert run_spark_sql(spark, jars, f"SELECT count(*), count(DISTINCT n) FROM {CATALOG_NAME}.{table}") == [expected]

    # Neither Java catalog changed the schema pyiceberg created.
    assert catalog_layout(postgres, catalog_database) == layout_before


def spark_conf(jdbc_url: str, user: str, warehouse: str, s3_endpoint: str) -> dict[str, str]:
    prefix = f"spark.sql.catalog.{CATALOG_NAME}"
    return {
        prefix: "org.apache.iceberg.spark.SparkCatalog",
        f"{prefix}.type": "jdbc",
        f"{prefix}.uri": jdbc_url,
        f"{prefix}.jdbc.user": user,
        f"{prefix}.warehouse": warehouse,
        f"{prefix}.io-impl": "org.apache.iceberg.aws.s3.S3FileIO",
        f"{prefix}.s3.endpoint": s3_endpoint,
        f"{prefix}.s3.path-style-access": "true",
        f"{prefix}.s3.access-key-id": ACCESS_KEY,
        f"{prefix}.s3.secret-access-key": SECRET_KEY,
        f"{prefix}.client.region": REGION,
    }


def catalog_layout(server: LocalPostgres, database: str) -> list[str]:
    """`table|column|type|length|nullable` of the catalog's tables, as PostgreSQL describes them."""
    sql = ("SELECT table_name, column_name, data_type, character_maximum_length, is_nullable"
           " FROM information_schema.columns WHERE table_schema = 'public' ORDER BY table_name, ordinal_position")
    return server.psql(sql, database).splitlines()
