"""A real S3-compatible server beside moto: S3Proxy on its file-system backend, the compatibility matrix's
object-store row.

The SQL catalog (a SQLite file) keeps the tables' metadata pointers; every data, manifest and metadata file
goes through S3Proxy. Pausing S3Proxy (SIGSTOP) is the object-store outage: the catalog stays up.

Tried for this row: S3Proxy 4.1.0 (one jar from Maven Central, starts in ~3 s on Java 17) was taken first
as the cheapest and passes; SeaweedFS and versitygw (Go builds) were not needed.

What S3Proxy does like S3 here: multipart uploads (pyarrow writes files over 5 MiB in parts, the ETag
says how many), overwrite of a key, `If-None-Match: *` refused with 412 on an existing key, paged and
delimited listings, DeleteObjects. What it does differently: its file-system backend stores a key as a
file, so a key that is also another key's "directory" (`a` beside `a/b`) fails with a 500
InternalError; Iceberg never writes such a pair.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from botocore.exceptions import ClientError

from tabletopic.compaction.orphans import find_orphans, remove_orphans
from tabletopic.local.rest_catalog import LocalRestCatalog
from tabletopic.local.s3proxy import ACCESS_KEY, REGION, SECRET_KEY, LocalS3Proxy
from tabletopic.local.trino import LocalTrino
from tests.compat import harness
from tests.compat.harness import LakeUnderTest, stopped
from tests.compat.spark_query import run_spark_sql
from tests.compat.trino_query import add_catalog, s3_properties, trino_sql
from tests.support import Writer, catalog_of, writer_config

NAME = "s3proxy"
SPARK_CATALOG = "s3proxy"
# pyarrow's S3 output stream uploads in 5 MiB+ parts once a file outgrows one part.
MULTIPART_BYTES = 12 * 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalS3Proxy]:
    store = LocalS3Proxy(tmp_path_factory.mktemp("s3proxy")).start()
    yield store
    store.stop()


def _pause(store: LocalS3Proxy) -> contextlib.AbstractContextManager[None]:
    assert store.process is not None
    return stopped(store.process.pid)


@pytest.fixture(scope="module")
def lake(server: LocalS3Proxy, tmp_path_factory: pytest.TempPathFactory) -> LakeUnderTest:
    bucket = f"lake-{uuid.uuid4().hex[:8]}"
    server.create_bucket(bucket)
    catalog = {
        "type": "sql",
        "uri": f"sqlite:///{tmp_path_factory.mktemp('s3proxy-catalog') / 'catalog.db'}",
        "warehouse": f"s3://{bucket}/wh",
        **server.catalog_properties(),
        # A store that stops answering fails a call after this long instead of holding it.
        "s3.connect-timeout": "2",
        "s3.request-timeout": "5",
    }
    return LakeUnderTest(NAME, catalog, pause=lambda: _pause(server))


@pytest.fixture(scope="module")
def written() -> dict[str, str]:
    """The tables the scenarios wrote, for the tests that look at them again."""
    return {}


def test_round_trip(lake: LakeUnderTest, kafka: Any, new_topic: Callable[..., str],
                    spawn_writer: Callable[..., Writer], tmp_path: Path, written: dict[str, str]) -> None:
    written["round_trip"] = harness.round_trip(lake, kafka, new_topic, spawn_writer, tmp_path)


def test_kill_9_chaos(lake: LakeUnderTest, kafka: Any, new_topic: Callable[..., str],
                      spawn_writer: Callable[..., Writer], tmp_path: Path, written: dict[str, str]) -> None:
    written["kill_9_chaos"] = harness.kill_9_chaos(lake, kafka, new_topic, spawn_writer, tmp_path)


def test_outage(lake: LakeUnderTest, kafka: Any, new_topic: Callable[..., str],
                spawn_writer: Callable[..., Writer], tmp_path: Path) -> None:
    harness.outage(lake, kafka, new_topic, spawn_writer, tmp_path, seconds=20)


def _config(lake: LakeUnderTest, tmp_path: Path, table: str) -> Path:
    return writer_config(tmp_path / "read.yaml", "127.0.0.1:9", "unused", table, "", catalog=dict(lake.catalog))


def test_orphan_files_are_listed_and_removed_through_the_store(
        lake: LakeUnderTest, server: LocalS3Proxy, kafka: Any, new_topic: Callable[..., str],
        spawn_writer: Callable[..., Writer], tmp_path: Path, written: dict[str, str]) -> None:
    """Orphan removal lists the table's location recursively, with modification times, and deletes what no
    snapshot names: S3Proxy's listing finds a planted orphan and no referenced file is taken."""
    table = written.get("kill_9_chaos") or harness.round_trip(lake, kafka, new_topic, spawn_writer, tmp_path)
    config = _config(lake, tmp_path, table)
    iceberg = catalog_of(config)
    location = iceberg.load_table(table).location()
    bucket, prefix = location.removeprefix("s3://").split("/", 1)
    planted = f"{prefix}/data/nested/deeper/planted-orphan.parquet"
    client = server.client()
    client.put_object(Bucket=bucket, Key=planted, Body=b"not referenced")
    rows_before = iceberg.load_table(table).scan().to_arrow().num_rows

    now_ms = int(time.time() * 1000) + 1000
    orphans = find_orphans(iceberg, table, now_ms)
    assert f"s3://{bucket}/{planted}" in orphans, orphans
    removed = remove_orphans(iceberg, table, now_ms, dry_run=False)
    assert removed == orphans
    assert find_orphans(iceberg, table, now_ms) == []
    with pytest.raises(ClientError) as missing:
        client.head_object(Bucket=bucket, Key=planted)
    assert missing.value.response["Error"]["Code"] in ("404", "NoSuchKey")
    assert iceberg.load_table(table).scan().to_arrow().num_rows == rows_before  # every referenced file still there


def test_a_large_data_file_goes_up_in_parts_and_reads_back_whole(
        lake: LakeUnderTest, server: LocalS3Proxy, tmp_path: Path) -> None:
    """The writer's FileIO (pyiceberg over pyarrow's S3 file system) uploads a file over one part in parts."""
    table = harness.fresh_table(lake)
    iceberg = catalog_of(_config(lake, tmp_path, table))
    iceberg.create_namespace_if_not_exists(table.split(".")[0])
    rows = 40_000
    # Random bytes do not compress: the Parquet file stays over two parts.
    data = pa.table({"n": pa.array(range(rows), pa.int64()),
                     "blob": pa.array([os.urandom(MULTIPART_BYTES // rows) for _ in range(rows)], pa.binary())})
    created = iceberg.create_table(table, schema=data.schema)
    created.append(data)

    [path] = created.inspect.files()["file_path"].to_pylist()
    bucket, key = path.removeprefix("s3://").split("/", 1)
    head = server.client().head_object(Bucket=bucket, Key=key)
    assert head["ContentLength"] > MULTIPART_BYTES
    parts = head["ETag"].strip('"').partition("-")[2]  # a multipart ETag is "<md5 of md5s>-<parts>"
    assert parts and int(parts) >= 2, head["ETag"]
    back = iceberg.load_table(table).scan().to_arrow().sort_by("n")
    assert back.equals(data.select(back.column_names)), "the file read back differs from the one written"


def test_the_store_answers_like_s3_where_iceberg_relies_on_it(server: LocalS3Proxy) -> None:
    """Overwrite replaces, a conditional create of an existing key is refused, a paged listing is whole,
    a missing key is NoSuchKey (pyiceberg's FileNotFoundError)."""
    client, bucket = server.client(), f"semantics-{uuid.uuid4().hex[:8]}"
    server.create_bucket(bucket)
    client.put_object(Bucket=bucket, Key="k", Body=b"first")
    client.put_object(Bucket=bucket, Key="k", Body=b"second")
    assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"second"
    with pytest.raises(ClientError) as refused:
        client.put_object(Bucket=bucket, Key="k", Body=b"third", IfNoneMatch="*")
    assert refused.value.response["Error"]["Code"] == "PreconditionFailed"
    assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"second"

    keys = [f"d/{i:03d}" for i in range(25)]
    for key in keys:
        client.put_object(Bucket=bucket, Key=key, Body=b"x")
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="d/",
                                                             PaginationConfig={"PageSize": 10})
    assert [o["Key"] for page in pages for o in page.get("Contents", [])] == keys
    with pytest.raises(ClientError) as missing:
        client.get_object(Bucket=bucket, Key="d/none")
    assert missing.value.response["Error"]["Code"] == "NoSuchKey"


def test_spark_and_trino_read_through_a_rest_catalog_on_the_store(
        server: LocalS3Proxy, trino_server: LocalTrino, kafka: Any, new_topic: Callable[..., str],
        spawn_writer: Callable[..., Writer], tmp_path: Path) -> None:
    """Iceberg's REST catalog over S3Proxy: tabletopic writes through it, Spark and Trino read the same rows."""
    rest = LocalRestCatalog(tmp_path / "rest", server, bucket=f"rest-{uuid.uuid4().hex[:8]}").start()
    try:
        lake = LakeUnderTest("s3proxyrest", rest.client_properties(), pause=lambda: _pause(server))
        table = harness.round_trip(lake, kafka, new_topic, spawn_writer, tmp_path)
        iceberg = catalog_of(_config(lake, tmp_path, table))
        rows = iceberg.load_table(table).scan().to_arrow()
        expected = [rows.num_rows, pc.count_distinct(rows["n"]).as_py()]

        add_catalog(trino_server, NAME, {
            "iceberg.catalog.type": "rest",
            "iceberg.rest-catalog.uri": rest.uri,
            **s3_properties(server.endpoint, ACCESS_KEY, SECRET_KEY, REGION),
        })
        assert trino_sql(trino_server, f"SELECT count(*), count(DISTINCT n) FROM {NAME}.{table}") == [expected]
        assert run_spark_sql(spark_conf(rest.uri, server.endpoint), [],
                             f"SELECT count(*), count(DISTINCT n) FROM {SPARK_CATALOG}.{table}") == [expected]
    finally:
        rest.stop()


def spark_conf(rest_uri: str, s3_endpoint: str) -> dict[str, str]:
    prefix = f"spark.sql.catalog.{SPARK_CATALOG}"
    return {
        prefix: "org.apache.iceberg.spark.SparkCatalog",
        f"{prefix}.type": "rest",
        f"{prefix}.uri": rest_uri,
        f"{prefix}.io-impl": "org.apache.iceberg.aws.s3.S3FileIO",
        f"{prefix}.s3.endpoint": s3_endpoint,
        f"{prefix}.s3.path-style-access": "true",
        f"{prefix}.s3.access-key-id": ACCESS_KEY,
        f"{prefix}.s3.secret-access-key": SECRET_KEY,
        f"{prefix}.client.region": REGION,
    }

