"""Spark's own compaction (`rewrite_data_files`) on a table a live tabletopic writer keeps committing to:
Spark's snapshots carry no offsets, recovery still finds the writer's, nothing is lost or doubled."""

from __future__ import annotations

import time

import pytest

from tabletopic.local.kafka import LocalKafka
from tabletopic.local.rest_catalog import LocalRestCatalog
from tabletopic.local.topics import create_topic
from tests.engines.engines import SparkEngine
from tests.support import Writer, assert_exactly_once, catalog_of, feed_slowly, log_end, wait_committed, writer_config

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

TABLE = "engines.spark_compacted"
RECORDS = 30_000
PARTITIONS = 4


def test_spark_rewrites_files_while_tabletopic_keeps_committing(kafka: LocalKafka, rest_catalog: LocalRestCatalog,
                                                                 tmp_path):
    topic = "engines-spark-compacted"
    create_topic(kafka.bootstrap, topic, PARTITIONS)
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, TABLE, "",
                           catalog={"name": "lake", **rest_catalog.client_properties()},
                           commit={"interval_seconds": 0.5})

    spark = SparkEngine(rest_catalog)
    writer = Writer(config)
    producer = None
    try:
        writer.wait_for("kafka.assigned", timeout=120)  # ~21 s of input from here, however slow the start
        producer = feed_slowly(kafka.bootstrap, topic, RECORDS, 1000, 0.7)
        writer.wait_for("commit.done", timeout=120)
        rewrites = []
        for _ in range(3):
            time.sleep(3)
            result = spark.session.sql(
                f"CALL lake.system.rewrite_data_files(table => '{TABLE}', options => map('min-input-files', '2'))"
            ).collect()
            rewrites.append(result[0]["rewritten_data_files_count"])
        producer.join()
        iceberg = catalog_of(config)
        wait_committed(iceberg, TABLE, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), timeout=300,
                       writer=writer)
        assert writer.stop() == 0, writer.log()
    finally:
        writer.kill()
        spark.close()
        if producer is not None:
            producer.join()
    assert sum(rewrites) > 0, rewrites
    operations = [s.summary.operation.value for s in iceberg.load_table(TABLE).snapshots()]
    # The writer committed after Spark's replace: its offsets were found behind Spark's snapshot.
    assert "replace" in operations and operations.index("replace") < len(operations) - 1 - operations[::-1].index(
        "append"), operations
    assert_exactly_once(iceberg, config, topic, TABLE, RECORDS)
