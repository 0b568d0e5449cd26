"""AWS Glue's API (moto's server) through pyiceberg's Glue catalog: the compatibility matrix's Glue row.

The catalog and its warehouse are one moto process of this module's own, so pausing it (the outage) takes
away both and disturbs no other test.

Glue's compare-and-swap is `UpdateTable(VersionId=<version read>)`: AWS refuses a stale version with
ConcurrentModificationException, which pyiceberg turns into CommitFailedException (a conflict tabletopic
reloads, re-checks and retries). moto 5.2 ignores VersionId (moto/glue/models.py: `FakeTable.update` stores
the new version whatever was read), so two writers racing through moto are not refused: the racing-writers
cell is a "no" on this double, and `test_moto_glue_lets_a_stale_commit_replace_a_newer_one` proves why.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.exceptions import CommitFailedException

from tabletopic.commit import faults
from tabletopic.local import glue
from tabletopic.local.ports import free_port
from tabletopic.local.s3 import ACCESS_KEY, REGION, SECRET_KEY, LocalS3
from tabletopic.local.trino import LocalTrino
from tests.compat import harness
from tests.compat.harness import LakeUnderTest, stopped
from tests.compat.spark_query import run_spark_sql
from tests.compat.trino_query import add_catalog, trino_sql
from tests.support import Writer

BUCKET = "glue-warehouse"
# Tables written by this module's scenarios, for the engines tests (each writes its own when run alone).
_written: list[str] = []


@pytest.fixture(scope="module")
def glue_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalS3]:
    server = LocalS3(tmp_path_factory.mktemp("glue")).start()
    server.create_bucket(BUCKET)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def lake(glue_server: LocalS3) -> LakeUnderTest:
    def pause() -> contextlib.AbstractContextManager[None]:
        assert glue_server.process is not None
        return stopped(glue_server.process.pid)

    return LakeUnderTest("glue", glue.catalog_properties(glue_server, BUCKET), pause)


def test_round_trip(lake: LakeUnderTest, kafka: Any, new_topic: Callable[..., str],
                    spawn_writer: Callable[..., Writer], tmp_path: Path) -> None:
    _written.append(harness.round_trip(lake, kafka, new_topic, spawn_writer, tmp_path))


def test_kill_9_chaos(lake: LakeUnderTest, kafka: Any, new_topic: Callable[..., str],
                      spawn_writer: Callable[..., Writer], tmp_path: Path) -> None:
    harness.kill_9_chaos(lake, kafka, new_topic, spawn_writer, tmp_path)


def test_outage(lake: LakeUnderTest, kafka: Any, new_topic: Callable[..., str],
                spawn_writer: Callable[..., Writer], tmp_path: Path) -> None:
    harness.outage(lake, kafka, new_topic, spawn_writer, tmp_path)


# -- Racing writers: what moto's Glue does with the version a commit was based on --------------------------

def _glue_client(server: LocalS3) -> Any:
    return boto3.client("glue", endpoint_url=server.endpoint, aws_access_key_id=ACCESS_KEY,
                        aws_secret_access_key=SECRET_KEY, region_name=REGION)


def test_moto_glue_ignores_a_stale_version_id(glue_server: LocalS3) -> None:
    """Two Glue clients read version 1; A updates on it; B's update on the same, now stale, version 1 is taken
    (AWS: ConcurrentModificationException) and A's update is overwritten."""
    database, a, b = f"glue_{uuid.uuid4().hex[:8]}", _glue_client(glue_server), _glue_client(glue_server)
    a.create_database(DatabaseInput={"Name": database})
    a.create_table(DatabaseName=database, TableInput={"Name": "t", "Parameters": {"metadata_location": "v0"}})
    read_by_a = a.get_table(DatabaseName=database, Name="t")["Table"]["VersionId"]
    read_by_b = b.get_table(DatabaseName=database, Name="t")["Table"]["VersionId"]
    a.update_table(DatabaseName=database, VersionId=read_by_a,
                   TableInput={"Name": "t", "Parameters": {"metadata_location": "by-a"}})
    try:
        b.update_table(DatabaseName=database, VersionId=read_by_b,
                       TableInput={"Name": "t", "Parameters": {"metadata_location": "by-b"}})
    except ClientError as refused:
        pytest.fail(f"moto refused the stale VersionId ({refused}): it enforces it now, turn the race cell on")
    assert a.get_table(DatabaseName=database, Name="t")["Table"]["Parameters"] == {"metadata_location": "by-b"}


def _one_row_table(catalog: Catalog, identifier: str) -> None:
    catalog.create_namespace_if_not_exists(identifier.split(".")[0])
    table = catalog.create_table(identifier, pa.schema([pa.field("n", pa.int64())]))
    table.append(pa.table({"n": pa.array([0], pa.int64())}))


def test_moto_glue_lets_a_stale_commit_replace_a_newer_one(lake: LakeUnderTest) -> None:
    """Writer B reads the table, writer A commits, then B commits on the version it read. AWS refuses B
    (ConcurrentModificationException -> pyiceberg's CommitFailedException -> tabletopic retries); moto takes
    B's commit and A's snapshot drops out of the table. So a race through moto proves nothing about
    exactly-once: the racing-writers cell is "no" for this double. If this test fails, moto enforces
    VersionId now: run `harness.writers_race` here and turn the cell on."""
    identifier = f"glue_{uuid.uuid4().hex[:8]}.race"
    writer_a = load_catalog("a", **lake.catalog)
    writer_b = load_catalog("b", **lake.catalog)
    _one_row_table(writer_a, identifier)
    table_a, table_b = writer_a.load_table(identifier), writer_b.load_table(identifier)
    a_landed: list[bool] = []

    def a_commits_first(**_: Any) -> None:
        # B has read the table (and its VersionId) and written its metadata file; A lands before B's UpdateTable.
        if not a_landed:
            a_landed.append(True)
            table_a.append(pa.table({"n": pa.array([1], pa.int64())}))

    writer_b.glue.meta.events.register("before-call.glue.UpdateTable", a_commits_first)  # type: ignore[attr-defined]
    table_b.append(pa.table({"n": pa.array([2], pa.int64())}))  # on AWS: CommitFailedException here

    assert a_landed
    values = sorted(writer_a.load_table(identifier).scan().to_arrow()["n"].to_pylist())
    assert values != [0, 1], "moto refused B's stale commit: it enforces VersionId now"
    assert values == [0, 2]  # A's commit is gone from the table: a lost update, not refused


def test_pyiceberg_turns_glues_refusal_into_a_commit_conflict(lake: LakeUnderTest) -> None:
    """What AWS answers a stale VersionId (moto never does, so the answer is injected at the client, not the
    server): pyiceberg raises CommitFailedException, the exception tabletopic's committer treats as another
    writer's commit (reload, re-check the offsets, retry)."""
    identifier = f"glue_{uuid.uuid4().hex[:8]}.refused"
    catalog = load_catalog("c", **lake.catalog)
    _one_row_table(catalog, identifier)
    table = catalog.load_table(identifier)

    def aws_refuses(**_: Any) -> tuple[Any, dict[str, Any]]:
        response = {"Error": {"Code": "ConcurrentModificationException",
                              "Message": "Update table failed due to concurrent modifications."},
                    "ResponseMetadata": {"HTTPStatusCode": 400}}
        return type("Http", (), {"status_code": 400})(), response

    catalog.glue.meta.events.register("before-call.glue.UpdateTable", aws_refuses)  # type: ignore[attr-defined]
    with pytest.raises(CommitFailedException) as refused:
        table.append(pa.table({"n": pa.array([1], pa.int64())}))
    assert isinstance(refused.value.__cause__, ClientError)
    assert catalog.load_table(identifier).scan().to_arrow().num_rows == 1


def test_an_unreachable_glue_endpoint_is_an_outage() -> None:
    """botocore's connection errors from the Glue client are retried as an outage, not a halt."""
    # An int: pyiceberg 0.12 hands glue.max-retries to botocore as given, and botocore refuses a string.
    properties: dict[str, Any] = {
        "type": "glue", "glue.endpoint": f"http://127.0.0.1:{free_port()}", "glue.region": REGION,
        "glue.access-key-id": ACCESS_KEY, "glue.secret-access-key": SECRET_KEY, "glue.max-retries": 1}
    catalog = load_catalog("away", **properties)
    with pytest.raises(EndpointConnectionError) as away:
        catalog.load_table("db.events")
    assert faults.permanent(away.value) is None
    assert faults.is_transient(away.value)


# -- Engines: the same table through the same Glue -----------------------------------------------------------

@pytest.fixture
def glue_table(lake: LakeUnderTest, kafka: Any, new_topic: Callable[..., str],
               spawn_writer: Callable[..., Writer], tmp_path: Path) -> str:
    if not _written:
        _written.append(harness.round_trip(lake, kafka, new_topic, spawn_writer, tmp_path))
    return _written[0]


def _expected(lake: LakeUnderTest, table: str) -> list[list[int]]:
    values = load_catalog("check", **lake.catalog).load_table(table).scan(selected_fields=("n",)).to_arrow()["n"]
    return [[len(values), len(set(values.to_pylist()))]]


def test_spark_reads_through_glue(lake: LakeUnderTest, glue_server: LocalS3, glue_table: str,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in glue.credentials_environment().items():
        monkeypatch.setenv(key, value)  # the Spark process's Glue client reads them
    rows = run_spark_sql(glue.spark_conf(glue_server, BUCKET), [],
                         f"SELECT count(*), count(DISTINCT n) FROM glue.{glue_table}")
    assert rows == _expected(lake, glue_table)


def test_trino_reads_through_glue(lake: LakeUnderTest, glue_server: LocalS3, glue_table: str,
                                  trino_server: LocalTrino) -> None:
    add_catalog(trino_server, "glue", glue.trino_catalog(glue_server))
    rows = trino_sql(trino_server, f"SELECT count(*), count(DISTINCT n) FROM glue.{glue_table}")
    assert rows == _expected(lake, glue_table)
