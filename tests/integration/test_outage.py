"""The object store goes away for 20 s mid-run: the writer stays up, says so, resumes by itself,
loses and doubles nothing, and no snapshot references a file of a failed commit."""

from __future__ import annotations

import signal
import time

import boto3

from tabletopic.local.s3 import ACCESS_KEY, REGION, SECRET_KEY, LocalS3
from tests.support import audit_cli, catalog_of, feed_slowly, log_end, wait_committed, writer_config

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
