"""The broker goes away for 20 s mid-run (stopped, then restarted on the same log): the writer stays
up, says so, resumes by itself, and the table holds every record once."""

from __future__ import annotations

import json
import time

from tabletopic.local.kafka import LocalKafka
from tabletopic.local.topics import create_topic
from tests.support import assert_exactly_once, catalog_of, log_end, produce, wait_committed, writer_config

PARTITIONS = 4
HALF = 20_000
OUTAGE_S = 20


def records(start: int, stop: int):  # type: ignore[no-untyped-def]
    return ((None, None, json.dumps({"n": n}).encode(), None) for n in range(start, stop))


def test_broker_outage(spawn_writer, tmp_path):
    kafka = LocalKafka(tmp_path / "kafka").start()
    try:
        topic = "outage"
        create_topic(kafka.bootstrap, topic, PARTITIONS)
        table = "outage.broker"
        config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, table, tmp_path / "wh")
        produce(kafka.bootstrap, topic, records(0, HALF))
        writer = spawn_writer(config)
        iceberg = catalog_of(config)
        wait_committed(iceberg, table, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), writer=writer)

        kafka.stop()
        time.sleep(OUTAGE_S)
        assert writer.process.poll() is None, writer.log()  # still up
        assert writer.named("kafka.error"), writer.log()  # and said why it makes no progress
        kafka.start()

        produce(kafka.bootstrap, topic, records(HALF, 2 * HALF))
        wait_committed(iceberg, table, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), timeout=180,
                       writer=writer)
        assert writer.stop() == 0, writer.log()
        assert_exactly_once(iceberg, config, topic, table, 2 * HALF)
    finally:
        kafka.stop()
