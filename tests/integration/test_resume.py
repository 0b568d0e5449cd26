"""The writer resumes where the table says, whatever the consumer group's offsets say."""

from __future__ import annotations

from confluent_kafka import Consumer, TopicPartition

from tabletopic.commit.committer import table_offsets
from tests.support import audit_cli, catalog_of, log_end, produce, wait_committed, writer_config

PARTITIONS = 2


def set_group_offsets(bootstrap: str, group: str, offsets: dict[tuple[str, int], int]) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": "false"})
    try:
        consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)
    finally:
        consumer.close()


def batch(topic_start: int, count: int):
    return ((None, None, b'{"n": %d}' % n, None) for n in range(topic_start, topic_start + count))


def run_until_committed(spawn_writer, config, iceberg, table, ends):
    writer = spawn_writer(config)
    assigned = writer.wait_for("kafka.assigned")
    wait_committed(iceberg, table, "tests", ends, writer=writer)
    assert writer.stop() == 0
    return assigned["partitions"]


def test_group_offsets_behind_or_ahead_do_not_move_the_writer(kafka, new_topic, spawn_writer, tmp_path):
    topic = new_topic(PARTITIONS)
    table = "resume.events"
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "warehouse")
    iceberg = catalog_of(config)

    produce(kafka.bootstrap, topic, batch(0, 1000))
    first_ends = log_end(kafka.bootstrap, topic, PARTITIONS)
    run_until_committed(spawn_writer, config, iceberg, table, first_ends)

    # Behind: the group says 0, the table says first_ends.
    set_group_offsets(kafka.bootstrap, "tests", dict.fromkeys(first_ends, 0))
    produce(kafka.bootstrap, topic, batch(1000, 1000))
    second_ends = log_end(kafka.bootstrap, topic, PARTITIONS)
    assigned = run_until_committed(spawn_writer, config, iceberg, table, second_ends)
    assert assigned == {f"{t}/{p}": n for (t, p), n in first_ends.items()}

    # Ahead: the group points past records the table does not have yet.
    produce(kafka.bootstrap, topic, batch(2000, 1000))
    third_ends = log_end(kafka.bootstrap, topic, PARTITIONS)
    set_group_offsets(kafka.bootstrap, "tests", third_ends)
    assigned = run_until_committed(spawn_writer, config, iceberg, table, third_ends)
    assert assigned == {f"{t}/{p}": n for (t, p), n in second_ends.items()}

    loaded = iceberg.load_table(table)
    assert table_offsets(loaded, "tests") == third_ends
    assert sorted(loaded.scan(selected_fields=("n",)).to_arrow()["n"].to_pylist()) == list(range(3000))
    audit = audit_cli(config, topic, table)
    assert audit.returncode == 0, audit.stdout
