"""Topics named by a pattern, each into a table named from a template, including a topic created
while the writer runs: each record in its topic's table, once."""

from __future__ import annotations

import json
import time

from tabletopic.local.topics import create_topic
from tests.support import audit_cli, catalog_of, log_end, produce, wait_committed, writer_config

PARTITIONS = 2


def records(topic: str, count: int):  # type: ignore[no-untyped-def]
    return ((None, None, json.dumps({"n": n, "source": topic}).encode(), None) for n in range(count))


def test_a_topic_pattern_gives_each_topic_its_own_table(kafka, spawn_writer, tmp_path):
    stamp = time.time_ns()
    topics = [f"Route.A-{stamp}", f"route.b-{stamp}"]
    for topic in topics:
        create_topic(kafka.bootstrap, topic, PARTITIONS)
        produce(kafka.bootstrap, topic, records(topic, 1500))
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, "-", "routed.{topic}", tmp_path / "wh",
                           kafka={"topic.metadata.refresh.interval.ms": "1000"},
                           table_settings={"topic": None, "topic_pattern": f"[Rr]oute\\.[a-zA-Z]-{stamp}"})
    writer = spawn_writer(config)
    late = f"route.c-{stamp}"  # created while the writer runs
    create_topic(kafka.bootstrap, late, PARTITIONS)
    produce(kafka.bootstrap, late, records(late, 700))
    iceberg = catalog_of(config)
    expected = {topics[0]: 1500, topics[1]: 1500, late: 700}
    for topic in expected:
        table = f"routed.route_{topic[6].lower()}_{stamp}"
        wait_committed(iceberg, table, "tests", log_end(kafka.bootstrap, topic, PARTITIONS), timeout=120,
                       writer=writer)
    assert writer.stop() == 0, writer.log()
    for topic, count in expected.items():
        table = f"routed.route_{topic[6].lower()}_{stamp}"
        rows = iceberg.load_table(table).scan(selected_fields=("n", "source")).to_arrow().to_pylist()
        assert sorted(r["n"] for r in rows) == list(range(count)) and {r["source"] for r in rows} == {topic}
        audit = audit_cli(config, topic, table)
        assert audit.returncode == 0, audit.stdout + audit.stderr


def test_a_tables_own_commit_interval_beats_the_global_one(kafka, new_topic, spawn_writer, tmp_path):
    topic = new_topic(PARTITIONS)
    produce(kafka.bootstrap, topic, records(topic, 500))
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, "routed.own_interval", tmp_path / "wh",
                           commit={"interval_seconds": 3600}, table_settings={"commit_interval_seconds": 0.5})
    writer = spawn_writer(config)
    # Under the global hour-long interval nothing would land before shutdown.
    wait_committed(catalog_of(config), "routed.own_interval", "tests", log_end(kafka.bootstrap, topic, PARTITIONS),
                   timeout=60, writer=writer)
    assert writer.stop() == 0


def test_route_by_field_into_three_tables_through_a_kill(kafka, new_topic, spawn_writer, tmp_path):
    from tests.support import feed_slowly

    topic = new_topic(4)
    regions = ["eu", "us", "apac", None]  # None: no field, to the default table

    def value(n: int) -> bytes:
        region = regions[n % 4]
        return json.dumps({"n": n, **({"region": region} if region else {})}).encode()

    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, "sales.other", tmp_path / "wh",
                           commit={"interval_seconds": 0.5},
                           table_settings={"route_field": "region",
                                           "route_tables": {"eu": "sales.eu", "us": "sales.us", "apac": "sales.apac"}})
    total = 40_000
    producer = feed_slowly(kafka.bootstrap, topic, total, 4000, 0.5, value=value)
    writer = spawn_writer(config)
    writer.wait_for("commit.done", timeout=120)
    time.sleep(1.5)
    writer.kill()
    writer = spawn_writer(config)
    producer.join()
    iceberg = catalog_of(config)
    ends = log_end(kafka.bootstrap, topic, 4)
    for table in ("sales.eu", "sales.us", "sales.apac", "sales.other"):
        wait_committed(iceberg, table, "tests", ends, timeout=120, writer=writer)
    assert writer.stop() == 0, writer.log()
    for table, region in (("sales.eu", "eu"), ("sales.us", "us"), ("sales.apac", "apac"), ("sales.other", None)):
        rows = iceberg.load_table(table).scan().to_arrow().to_pylist()
        assert sorted(r["n"] for r in rows) == [n for n in range(total) if regions[n % 4] == region], table
        assert {r.get("region") for r in rows} == {region}
