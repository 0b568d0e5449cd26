"""One table whose commits fail (its bucket does not exist) halts on its own; the other table keeps
committing and its offsets keep moving; once the bucket exists the failing one catches up. And a
table is isolated from aborted transactions, whatever `isolation.level` the config asks for."""

from __future__ import annotations

import time

import pyarrow as pa

from tabletopic.catalog.tables import TABLE_PROPERTIES, table_schema
from tabletopic.commit.committer import table_offsets
from tabletopic.local.s3 import LocalS3
from tests.support import audit_cli, catalog_of, log_end, produce, wait_committed, writer_config

PARTITIONS = 2


def records(start: int, count: int):
    return ((None, None, b'{"n": %d}' % n, None) for n in range(start, start + count))


def test_a_failing_table_does_not_stop_the_others(kafka, new_topic, spawn_writer, tmp_path):
    s3 = LocalS3(tmp_path / "s3").start()
    try:
        healthy_topic, failing_topic = new_topic(PARTITIONS), new_topic(PARTITIONS)
        catalog = {"uri": f"sqlite:///{tmp_path}/catalog.db", "warehouse": f"file://{tmp_path}/warehouse",
                   **s3.catalog_properties()}
        config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, healthy_topic, "iso.healthy", "",
                               catalog=catalog, commit={"interval_seconds": 1, "retry_deadline_seconds": 3})
        iceberg = catalog_of(config)
        # The failing table writes its data files to a bucket that does not exist yet.
        iceberg.create_namespace_if_not_exists("iso")
        iceberg.create_table("iso.failing", schema=table_schema(pa.schema([pa.field("n", pa.int64())]), True),
                             properties={**TABLE_PROPERTIES, "write.data.path": "s3://not-yet/failing"})
        text = config.read_text().replace(
            "tables:\n", f"tables:\n- table: iso.failing\n  topic: {failing_topic}\n")
        config.write_text(text)

        produce(kafka.bootstrap, healthy_topic, records(0, 1000))
        produce(kafka.bootstrap, failing_topic, records(0, 1000))
        writer = spawn_writer(config)
        # A missing bucket is a fault no retry fixes: the table halts (retrying now and then), the others go on.
        writer.wait_for("table.halted", timeout=120)
        for round_ in range(1, 4):  # the healthy table's offsets keep moving meanwhile
            produce(kafka.bootstrap, healthy_topic, records(round_ * 1000, 1000))
            wait_committed(iceberg, "iso.healthy", "tests", log_end(kafka.bootstrap, healthy_topic, PARTITIONS),
                           writer=writer)
        assert table_offsets(iceberg.load_table("iso.failing"), "tests") == {}
        assert writer.process.poll() is None

        s3.create_bucket("not-yet")
        wait_committed(iceberg, "iso.failing", "tests", log_end(kafka.bootstrap, failing_topic, PARTITIONS),
                       timeout=180, writer=writer)
        time.sleep(1)
        assert writer.stop() == 0, writer.log()
        assert writer.named("table.fault_cleared"), writer.log()
        assert iceberg.load_table("iso.healthy").scan().count() == 4000
        assert iceberg.load_table("iso.failing").scan().count() == 1000
        for topic, table in ((healthy_topic, "iso.healthy"), (failing_topic, "iso.failing")):
            audit = audit_cli(config, topic, table)
            assert audit.returncode == 0, audit.stdout
    finally:
        s3.stop()


def test_aborted_transactions_stay_out_even_when_the_config_asks_for_read_uncommitted(
        kafka, new_topic, spawn_writer, tmp_path):
    from confluent_kafka import Producer

    topic = new_topic(PARTITIONS)
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "transactional.id": f"iso-{topic}"})
    producer.init_transactions()
    kept = []
    for batch in range(6):
        producer.begin_transaction()
        numbers = range(batch * 100, batch * 100 + 100)
        for n in numbers:
            producer.produce(topic, value=b'{"n": %d}' % n)
        producer.flush()
        if batch % 2:
            producer.abort_transaction()
        else:
            producer.commit_transaction()
            kept.extend(numbers)
    produce(kafka.bootstrap, topic, records(600, 10))  # after the last marker: the table's offset reaches the end
    kept.extend(range(600, 610))
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, "iso.transactions", tmp_path / "wh",
                           kafka={"isolation.level": "read_uncommitted"})
    writer = spawn_writer(config)
    iceberg = catalog_of(config)
    wait_committed(iceberg, "iso.transactions", "tests", log_end(kafka.bootstrap, topic, PARTITIONS), writer=writer)
    assert writer.stop() == 0, writer.log()
    [overridden] = writer.named("kafka.setting_overridden")
    assert overridden["setting"] == "isolation.level" and overridden["used"] == "read_committed", overridden
    values = iceberg.load_table("iso.transactions").scan(selected_fields=("n",)).to_arrow()["n"].to_pylist()
    assert sorted(values) == kept
    audit = audit_cli(config, topic, "iso.transactions")
    assert audit.returncode == 0, audit.stdout
