"""The topic deleted and recreated, under a running writer or while none runs, and its new log grown
past the table's offsets: the table stops with the reason and the command that fixes it, takes no
record silently, and after `offsets reset` the new topic's records land once. A position the log
no longer holds is sought again, not left stopped."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from tabletopic.local.topics import create_topic, delete_topic
from tests.support import audit_cli, catalog_of, log_end, produce, wait_committed, writer_config

PARTITIONS = 2


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tabletopic", *args], capture_output=True, text=True, timeout=120)


def records(start: int, stop: int):  # type: ignore[no-untyped-def]
    return ((None, None, json.dumps({"n": n}).encode(), None) for n in range(start, stop))


def assert_new_topic_landed_once(iceberg, table: str, ends: dict[tuple[str, int], int], first_new: int,
                                 first_row: int = 0) -> None:
    """Every record of the recreated topic (n >= first_new) in the table once, at its own offset (from
    `first_row`: the ones before are dead letters): the offset audit, for the new incarnation only (the
    old one's rows share its offsets)."""
    rows = iceberg.load_table(table).scan(selected_fields=("n", "_kafka_partition", "_kafka_offset")).to_arrow()
    new = [r for r in rows.to_pylist() if r["n"] >= first_new]
    for (_, partition), end in ends.items():
        offsets = sorted(r["_kafka_offset"] for r in new if r["_kafka_partition"] == partition)
        assert offsets == list(range(first_row, end)), f"partition {partition}: {len(offsets)} rows for {end} records"


def recreate(bootstrap: str, topic: str) -> None:
    delete_topic(bootstrap, topic)
    time.sleep(4)  # the broker finishes the deletion before a topic of the same name can be created
    create_topic(bootstrap, topic, PARTITIONS)


def reset_to_earliest(config, table: str) -> None:  # type: ignore[no-untyped-def]
    reset = cli("offsets", "reset", "--config", str(config), "--table", table, "--to-earliest")
    assert reset.returncode == 0, reset.stderr


def test_a_recreated_topic_halts_the_table_until_an_offsets_reset(kafka, spawn_writer, tmp_path):
    topic = f"recreated-{time.time_ns()}"
    table = "offsets.recreated"
    create_topic(kafka.bootstrap, topic, PARTITIONS)
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "wh",
                           kafka={"topic.metadata.refresh.interval.ms": "1000"})
    produce(kafka.bootstrap, topic, records(0, 1000))
    writer = spawn_writer(config)
    iceberg = catalog_of(config)
    wait_committed(iceberg, table, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), writer=writer)

    recreate(kafka.bootstrap, topic)
    # More than the old offsets: the new log's bounds alone would soon look valid for them.
    produce(kafka.bootstrap, topic, records(1000, 3000))
    invalid = writer.wait_for("table.offsets_invalid", timeout=120)
    assert "recreated" in invalid["reason"] and "offsets reset" in invalid["fix"], invalid
    time.sleep(3)
    assert iceberg.load_table(table).scan().count() == 1000  # nothing of the new topic taken silently

    shown = cli("offsets", "show", "--config", str(config), "--table", table)
    assert shown.returncode == 0 and "recreated" in shown.stdout, shown.stdout + shown.stderr
    dry = cli("offsets", "reset", "--config", str(config), "--table", table, "--to-earliest", "--dry-run")
    assert dry.returncode == 0 and "dry run" in dry.stdout, dry.stderr
    reset = cli("offsets", "reset", "--config", str(config), "--table", table, "--to-earliest")
    assert reset.returncode == 0, reset.stderr

    writer.wait_for("table.offsets_valid", timeout=60)
    ends = log_end(kafka.bootstrap, topic, PARTITIONS)
    wait_committed(iceberg, table, "tests", ends, writer=writer)
    assert writer.stop() == 0, writer.log()
    values = iceberg.load_table(table).scan(selected_fields=("n",)).to_arrow()["n"].to_pylist()
    assert sorted(values) == list(range(3000))
    assert_new_topic_landed_once(iceberg, table, ends, 1000)
    history = [s.summary.additional_properties for s in iceberg.load_table(table).snapshots() if s.summary]
    assert any("tabletopic.offsets-reset" in summary for summary in history)


def test_a_writer_started_after_the_recreated_topic_outgrew_the_old_offsets_halts(kafka, spawn_writer, tmp_path):
    topic = f"recreated-late-{time.time_ns()}"
    table = "offsets.recreated_late"
    create_topic(kafka.bootstrap, topic, PARTITIONS)
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "wh")
    produce(kafka.bootstrap, topic, records(0, 400))
    produce(kafka.bootstrap, topic, ((p, None, b"old bad", None) for p in range(PARTITIONS)))  # dead letters
    writer = spawn_writer(config)
    iceberg = catalog_of(config)
    wait_committed(iceberg, table, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), writer=writer)
    assert writer.stop() == 0, writer.log()

    recreate(kafka.bootstrap, topic)
    # Bad records early in the new log, below the dead-letter table's old offsets.
    produce(kafka.bootstrap, topic, ((p, None, b"new bad", None) for p in range(PARTITIONS)))
    produce(kafka.bootstrap, topic, records(400, 1400))  # ~500 a partition, past the old ~200: bounds look fine
    writer = spawn_writer(config)
    invalid = writer.wait_for("table.offsets_invalid", timeout=60)
    assert "recreated" in invalid["reason"] and "offsets reset" in invalid["fix"], invalid
    time.sleep(6)  # a position recheck or more: the halt never clears by itself
    assert not writer.named("table.offsets_valid"), writer.log()
    assert iceberg.load_table(table).scan().count() == 400
    shown = cli("offsets", "show", "--config", str(config), "--table", table)
    assert shown.returncode == 0 and "recreated" in shown.stdout, shown.stdout + shown.stderr

    reset_to_earliest(config, table)
    writer.wait_for("table.offsets_valid", timeout=60)
    ends = log_end(kafka.bootstrap, topic, PARTITIONS)
    wait_committed(iceberg, table, "tests", ends, writer=writer)
    assert writer.stop() == 0, writer.log()
    values = iceberg.load_table(table).scan(selected_fields=("n",)).to_arrow()["n"].to_pylist()
    assert sorted(values) == list(range(1400))
    assert_new_topic_landed_once(iceberg, table, ends, 400, first_row=1)
    letters = iceberg.load_table(f"{table}__dlq").scan().to_arrow().to_pylist()
    assert sorted((r["_kafka_partition"], r["_kafka_offset"], r["_kafka_value"]) for r in letters
                  if r["_kafka_value"] == b"new bad") == [
        (p, 0, b"new bad") for p in range(PARTITIONS)], letters
    # A writer started afresh goes on from the reset offsets: nothing halts, nothing is read twice.
    produce(kafka.bootstrap, topic, records(1400, 1500))
    writer = spawn_writer(config)
    ends = log_end(kafka.bootstrap, topic, PARTITIONS)
    wait_committed(iceberg, table, "tests", ends, writer=writer)
    assert writer.stop() == 0, writer.log()
    assert not writer.named("table.offsets_invalid"), writer.log()
    assert iceberg.load_table(table).scan().count() == 1500


def test_status_reports_lag_freshness_and_files(kafka, new_topic, spawn_writer, tmp_path):
    topic = new_topic(PARTITIONS)
    table = "offsets.status"
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "wh")
    produce(kafka.bootstrap, topic, records(0, 1000))
    writer = spawn_writer(config)
    wait_committed(catalog_of(config), table, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), writer=writer)
    assert writer.stop() == 0
    produce(kafka.bootstrap, topic, records(1000, 1200))  # not read yet: lag

    result = cli("status", "--config", str(config), "--output", "json")
    assert result.returncode == 0, result.stderr
    [status] = json.loads(result.stdout)
    assert status["table"] == table and status["exists"]
    assert status["lag"] == 200 and status["partitions_invalid"] == 0
    assert 0 <= status["last_commit_age_s"] < 120 and 0 <= status["newest_record_age_s"] < 120
    assert status["snapshots"] >= 1 and status["data_files"] >= 1 and status["small_files"] == status["data_files"]
    text = cli("status", "--config", str(config))
    assert text.returncode == 0 and table in text.stdout


def test_a_position_the_log_no_longer_holds_is_sought_where_the_table_stands(kafka, new_topic, spawn_writer,
                                                                              tmp_path):
    """librdkafka stops fetching a partition whose position left the log (auto.offset.reset=error) until
    it is sought. Partition 0: the table was moved past the writer's position (`offsets reset` while it
    runs) and retention took the records in between; partition 1: the table has never seen it, and
    retention took its head before the first fetch. Neither table offset is a problem: both are sought."""
    from confluent_kafka import Producer, TopicPartition
    from confluent_kafka.admin import AdminClient

    topic = new_topic(PARTITIONS)
    table = "offsets.resought"
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "wh")
    produce(kafka.bootstrap, topic, ((0, None, json.dumps({"n": n}).encode(), None) for n in range(300)))
    writer = spawn_writer(config)
    iceberg = catalog_of(config)
    wait_committed(iceberg, table, "tests", {(topic, 0): 300}, writer=writer)

    # Records the writer cannot read yet (an open transaction), so its positions stay at 300 and 0.
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "transactional.id": f"resought-{topic}"})
    producer.init_transactions()
    producer.begin_transaction()
    for n in range(300, 1300):
        producer.produce(topic, value=json.dumps({"n": n}).encode(), partition=0)  # offsets 300..1299
    for n in range(1300, 2300):
        producer.produce(topic, value=json.dumps({"n": n}).encode(), partition=1)  # offsets 0..999
    producer.flush()
    moved = cli("offsets", "reset", "--config", str(config), "--table", table, "--partitions", "0",
                "--to-offset", "800")
    assert moved.returncode == 0, moved.stderr
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    for future in admin.delete_records([TopicPartition(topic, 0, 800), TopicPartition(topic, 1, 500)]).values():
        future.result(timeout=30)
    producer.commit_transaction()

    wait_committed(iceberg, table, "tests", {(topic, 0): 1300, (topic, 1): 1000}, timeout=60, writer=writer)
    assert writer.stop() == 0, writer.log()
    assert writer.named("partition.out_of_range_resought"), writer.log()
    assert not writer.named("table.offsets_invalid"), writer.log()
    values = iceberg.load_table(table).scan(selected_fields=("n",)).to_arrow()["n"].to_pylist()
    assert sorted(values) == [*range(300), *range(800, 1300), *range(1800, 2300)]
    audit = audit_cli(config, topic, table)
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_a_halt_released_reads_again_what_it_dropped_of_a_partition_new_to_the_table(kafka, new_topic, spawn_writer,
                                                                                     tmp_path):
    """Partition 0 is new to the table and buffered (not committed) when partition 1's records are lost
    to retention: the table halts, and its release drops partition 0's buffer. Partition 0 must be read
    again from its start, not go on from where it was (its first records would be lost for good)."""
    from confluent_kafka import Producer, TopicPartition
    from confluent_kafka.admin import AdminClient

    topic = new_topic(PARTITIONS)
    table = "offsets.released"
    quick = writer_config(tmp_path / "quick.yaml", kafka.bootstrap, topic, table, tmp_path / "wh")
    slow = writer_config(tmp_path / "slow.yaml", kafka.bootstrap, topic, table, tmp_path / "wh",
                         commit={"interval_seconds": 3600})
    iceberg = catalog_of(quick)

    def to(partition: int, numbers: range, **extra: int):  # type: ignore[no-untyped-def]
        return ((partition, None, json.dumps({"n": n, **extra}).encode(), None) for n in numbers)

    produce(kafka.bootstrap, topic, to(1, range(100)))
    writer = spawn_writer(quick)
    wait_committed(iceberg, table, "tests", {(topic, 1): 100}, writer=writer)
    assert writer.stop() == 0, writer.log()

    produce(kafka.bootstrap, topic, to(0, range(100, 400), late=1))
    writer = spawn_writer(slow)
    writer.wait_for("schema.evolved")  # partition 0's records are buffered: the new column came with them
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "transactional.id": f"released-{topic}"})
    producer.init_transactions()
    producer.begin_transaction()
    for n in range(400, 600):
        producer.produce(topic, value=json.dumps({"n": n}).encode(), partition=1)  # offsets 100..299
    producer.flush()
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    for future in admin.delete_records([TopicPartition(topic, 1, 150)]).values():
        future.result(timeout=30)  # past the table's offset 100: records 100..149 are gone
    producer.commit_transaction()
    invalid = writer.wait_for("table.offsets_invalid")
    assert invalid["partition"] == 1 and "gone" in invalid["reason"], invalid
    moved = cli("offsets", "reset", "--config", str(slow), "--table", table, "--partitions", "1", "--to-earliest")
    assert moved.returncode == 0, moved.stderr
    writer.wait_for("table.offsets_valid")
    produce(kafka.bootstrap, topic, to(0, range(600, 650), after=1))  # offsets 300..349
    writer.wait_for("schema.evolved")  # read up to them
    assert writer.stop() == 0, writer.log()

    writer = spawn_writer(quick)  # takes what the slow one had not read yet
    writer.wait_for("kafka.assigned")
    ends = log_end(kafka.bootstrap, topic, PARTITIONS)
    wait_committed(iceberg, table, "tests", {(topic, 0): ends[(topic, 0)], (topic, 1): ends[(topic, 1)] - 1},
                   writer=writer)  # the last record of partition 1 is followed by its transaction's marker
    assert writer.stop() == 0, writer.log()
    values = iceberg.load_table(table).scan(selected_fields=("n",)).to_arrow()["n"].to_pylist()
    assert sorted(values) == [*range(100), *range(100, 400), *range(450, 600), *range(600, 650)]
    audit = audit_cli(quick, topic, table)
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_offsets_show_and_reset_by_flags_alone(kafka, new_topic, spawn_writer, tmp_path):
    """No config file: the table is named by --table and --topic, the rest by connection flags."""
    topic = new_topic(PARTITIONS)
    table = "offsets.flags_only"
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "wh")
    produce(kafka.bootstrap, topic, records(0, 400))
    writer = spawn_writer(config)
    ends = log_end(kafka.bootstrap, topic, PARTITIONS)
    wait_committed(catalog_of(config), table, "tests", ends, writer=writer)
    assert writer.stop() == 0, writer.log()
    flags = ("--bootstrap-servers", kafka.bootstrap, "--warehouse", str(tmp_path / "wh"), "--group-id", "tests",
             "--table", table, "--topic", topic)

    reset = cli("offsets", "reset", *flags, "--partitions", "0", "--to-earliest")
    assert reset.returncode == 0, reset.stderr
    shown = cli("offsets", "show", *flags, "--output", "json")
    assert shown.returncode == 0, shown.stderr
    committed = {row["partition"]: row["committed"] for row in json.loads(shown.stdout)}
    assert committed == {0: 0, 1: ends[(topic, 1)]}
