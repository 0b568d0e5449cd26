"""The object store goes away for 20 s mid-run: the writer stays up, says so, resumes by itself,
loses and doubles nothing, and no snapshot references a file of a failed commit. A fault no retry
fixes (a missing bucket, refused credentials) halts its table and leaves the others alone."""

from __future__ import annotations

import signal
import time
import urllib.error
import urllib.request
import uuid

import boto3
import pytest

from tabletopic.commit import faults
from tabletopic.commit.committer import table_offsets
from tabletopic.local.ports import free_port
from tabletopic.local.s3 import ACCESS_KEY, REGION, SECRET_KEY, LocalS3
from tests.support import (
    audit_cli,
    catalog_of,
    feed_slowly,
    json_n,
    log_end,
    produce,
    wait_committed,
    writer_config,
)

RECORDS = 60_000
PARTITIONS = 4
OUTAGE_S = 20


def test_object_store_outage(kafka, new_topic, spawn_writer, tmp_path):
    s3 = LocalS3(tmp_path / "s3").start()
    try:
        s3.create_bucket("lake")
        topic = new_topic(PARTITIONS)
        table = "outage.events"
        catalog = {"uri": f"sqlite:///{tmp_path}/catalog.db", "warehouse": "s3://lake/wh",
                   **s3.catalog_properties(), "s3.connect-timeout": "2", "s3.request-timeout": "5"}
        config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, "", catalog=catalog,
                               commit={"interval_seconds": 1, "retry_deadline_seconds": 8})

        producer = feed_slowly(kafka.bootstrap, topic, RECORDS, 2000, 1.0)
        writer = spawn_writer(config)
        writer.wait_for("commit.done", timeout=120)
        assert s3.process is not None
        s3.process.send_signal(signal.SIGSTOP)
        try:
            time.sleep(OUTAGE_S)
            assert writer.process.poll() is None, writer.log()  # still up
        finally:
            s3.process.send_signal(signal.SIGCONT)
        producer.join()
        ends = log_end(kafka.bootstrap, topic, PARTITIONS)
        iceberg = catalog_of(config)
        wait_committed(iceberg, table, "tests", ends, timeout=240, writer=writer)
        assert writer.stop() == 0, writer.log()

        # It said so while the store was away, and it came back by itself.
        assert writer.named("table.commit_failed") or writer.named("commit.unavailable"), writer.log()
        loaded = iceberg.load_table(table)
        assert sorted(loaded.scan(selected_fields=("n",)).to_arrow()["n"].to_pylist()) == list(range(RECORDS))
        audit = audit_cli(config, topic, table)
        assert audit.returncode == 0, audit.stdout

        referenced = set(loaded.inspect.files()["file_path"].to_pylist())
        client = boto3.client("s3", endpoint_url=s3.endpoint, aws_access_key_id=ACCESS_KEY,
                              aws_secret_access_key=SECRET_KEY, region_name=REGION)
        stored = {f"s3://lake/{o['Key']}" for page in client.get_paginator("list_objects_v2").paginate(Bucket="lake")
                  for o in page.get("Contents", []) if o["Key"].endswith(".parquet")}
        assert referenced <= stored  # every committed file is there
        orphans = stored - referenced
        print(f"orphan data files left by failed commits: {len(orphans)} of {len(stored)}")
    finally:
        s3.stop()


def test_a_table_whose_bucket_is_missing_halts_and_the_others_go_on(kafka, new_topic, spawn_writer, s3, tmp_path):
    """Retrying cannot create a bucket: the table halts at once with the reason and the fix, on /readyz and
    in metrics, while the other table of the same writer keeps committing."""
    bucket, missing = f"lake-{uuid.uuid4().hex[:8]}", f"missing-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(bucket)
    good_topic, bad_topic = new_topic(2), new_topic(2)
    port = free_port()
    catalog = {"uri": f"sqlite:///{tmp_path}/catalog.db", "warehouse": f"s3://{bucket}/wh", **s3.catalog_properties()}
    config = writer_config(
        tmp_path / "c.yaml", kafka.bootstrap, good_topic, "faults.good", "", catalog=catalog,
        commit={"interval_seconds": 1, "retry_deadline_seconds": 20},
        http={"enabled": True, "host": "127.0.0.1", "port": port},
        tables=[{"table": "faults.good", "topic": good_topic},
                # Metadata in the warehouse, data files in a bucket that does not exist.
                {"table": "faults.halted", "topic": bad_topic,
                 "properties": {"write.data.path": f"s3://{missing}/data"}}],
    )
    produce(kafka.bootstrap, bad_topic, ((None, None, json_n(n), None) for n in range(100)))
    produce(kafka.bootstrap, good_topic, ((None, None, json_n(n), None) for n in range(1000)))
    writer = spawn_writer(config)
    halted = writer.wait_for("table.halted", timeout=90)
    assert (halted["table"], halted["reason"]) == ("faults.halted", "no_such_bucket"), halted
    assert "create it" in halted["fix"] and missing in halted["error"]
    # Not retried as an outage: no attempt after the first.
    assert not [e for e in writer.named("commit.unavailable") if e.get("table") == "faults.halted"], writer.log()

    status, reason = http_get(port, "/readyz")
    assert status == 503 and "faults.halted" in reason and "no_such_bucket" in reason, reason
    assert 'tabletopic_table_halted{reason="no_such_bucket",table="faults.halted"} 1.0' in http_get(port, "/metrics")[1]

    # The other table goes on, also with records produced after the halt.
    produce(kafka.bootstrap, good_topic, ((None, None, json_n(n), None) for n in range(1000, 2000)))
    iceberg = catalog_of(config)
    wait_committed(iceberg, "faults.good", "tests", log_end(kafka.bootstrap, good_topic, 2), writer=writer)
    good = iceberg.load_table("faults.good").scan(selected_fields=("n",)).to_arrow()["n"].to_pylist()
    assert sorted(good) == list(range(2000))
    assert not table_offsets(iceberg.load_table("faults.halted"), "tests")  # nothing committed, nothing skipped
    # Its records are still buffered and cannot be committed at shutdown: exit 4 (a commit failed).
    assert writer.stop() == 4, writer.log()


def test_a_table_that_cannot_be_created_halts_instead_of_crash_looping(kafka, new_topic, spawn_writer, s3,
                                                                          tmp_path):
    """The first batch creates the table: with its namespace in a bucket that does not exist, the
    creation's fault halts that table (the worker does not crash into a restart loop), the other goes on."""
    bucket, missing = f"lake-{uuid.uuid4().hex[:8]}", f"missing-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(bucket)
    good_topic, bad_topic = new_topic(2), new_topic(2)
    catalog = {"uri": f"sqlite:///{tmp_path}/catalog.db", "warehouse": f"s3://{bucket}/wh", **s3.catalog_properties()}
    config = writer_config(
        tmp_path / "c.yaml", kafka.bootstrap, good_topic, "fine.good", "", catalog=catalog,
        commit={"interval_seconds": 1},
        tables=[{"table": "fine.good", "topic": good_topic}, {"table": "broken.events", "topic": bad_topic}],
    )
    catalog_of(config).create_namespace("broken", {"location": f"s3://{missing}/broken"})
    produce(kafka.bootstrap, bad_topic, ((None, None, json_n(n), None) for n in range(100)))
    produce(kafka.bootstrap, good_topic, ((None, None, json_n(n), None) for n in range(500)))
    writer = spawn_writer(config)
    halted = writer.wait_for("table.halted", timeout=90)
    assert (halted["table"], halted["reason"]) == ("broken.events", "no_such_bucket"), halted
    iceberg = catalog_of(config)
    wait_committed(iceberg, "fine.good", "tests", log_end(kafka.bootstrap, good_topic, 2), writer=writer)
    assert writer.process.poll() is None and not writer.named("service.crashed"), writer.log()
    assert writer.stop() == 0, writer.log()


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.mark.parametrize("io_impl", ["pyiceberg.io.pyarrow.PyArrowFileIO", "pyiceberg.io.fsspec.FsspecFileIO"])
def test_what_the_file_ios_raise_is_told_apart(s3, tmp_path, monkeypatch, io_impl):
    """Against moto: a missing bucket and refused credentials are permanent for both of pyiceberg's FileIOs;
    a stopped S3 server is an outage."""
    from pyiceberg.io import load_file_io

    def write_error(properties: dict[str, str], location: str) -> BaseException:
        io = load_file_io({**properties, "py-io-impl": io_impl, "s3.connect-timeout": "1",
                           "s3.request-timeout": "2"}, location)
        try:
            with io.new_output(location).create(overwrite=True) as out:
                out.write(b"x")
        except Exception as exc:
            return exc
        raise AssertionError(f"no error writing {location}")

    missing = write_error(s3.catalog_properties(), f"s3://missing-{uuid.uuid4().hex[:8]}/f")
    assert faults.permanent(missing) == faults.Permanent("no_such_bucket", faults.FIXES["no_such_bucket"]), missing

    monkeypatch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", "0")  # this moto checks credentials: ours are unknown to it
    strict = LocalS3(tmp_path / "strict-s3").start()
    try:
        refused = write_error(strict.catalog_properties(), "s3://lake/f")
        assert faults.permanent(refused) is not None and faults.permanent(refused).reason in (  # type: ignore[union-attr]
            "access_denied", "invalid_credentials"), refused
    finally:
        strict.stop()
    down = write_error(strict.catalog_properties(), "s3://lake/f")  # nothing listens on its port now
    assert faults.permanent(down) is None and faults.is_transient(down), down
