"""Topics named by a pattern, each into a table named from a template, including a topic created
while the writer runs: each record in its topic's table, once."""

from __future__ import annotations

import itertools
import json
import threading
import time

from confluent_kafka import KafkaError, KafkaException
from structlog.testing import capture_logs

from tabletopic import service as service_module
from tabletopic.config import load_config
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


def test_routed_tables_commit_once_per_interval_each(kafka, new_topic, spawn_writer, tmp_path):
    """Every routed table takes every chunk's offset range (its share may be empty, so the lowest offset
    among them keeps moving), yet each commits at most once per commit interval: no table commits
    because a sibling flushed, or on every loop turn."""
    from tests.support import feed_slowly

    topic = new_topic(2)
    regions = ["eu", "us", None]

    def value(n: int) -> bytes:
        region = regions[n % 3]
        return json.dumps({"n": n, **({"region": region} if region else {})}).encode()

    interval_s = 3
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, topic, "counted.other", tmp_path / "wh",
                           commit={"interval_seconds": interval_s},
                           table_settings={"route_field": "region",
                                           "route_tables": {"eu": "counted.eu", "us": "counted.us"}})
    writer = spawn_writer(config)
    feed_slowly(kafka.bootstrap, topic, 3000, 100, 0.3, value=value).join()  # ~9 s of steady input
    ends = log_end(kafka.bootstrap, topic, 2)
    iceberg = catalog_of(config)
    tables = ("counted.eu", "counted.us", "counted.other")
    for table in tables:
        wait_committed(iceberg, table, "tests", ends, writer=writer)
    assert writer.stop() == 0, writer.log()
    for table, region in zip(tables, ("eu", "us", None), strict=True):
        rows = iceberg.load_table(table).scan(selected_fields=("n",)).to_arrow()["n"].to_pylist()
        assert sorted(rows) == [n for n in range(3000) if regions[n % 3] == region], table
        commits = sorted(s.timestamp_ms for s in iceberg.load_table(table).snapshots()
                         if s.summary and "tabletopic.offsets.tests" in s.summary.additional_properties)
        assert len(commits) >= 3, (table, commits)  # the offsets moved along with the input
        gaps = [b - a for a, b in itertools.pairwise(commits)]
        # A flush starts at least an interval after the previous one started; commits take well under one.
        assert min(gaps) >= interval_s * 1000 / 2, (table, gaps)


def test_a_topic_folding_onto_a_fed_table_or_onto_its_dead_letters_is_refused(kafka, spawn_writer, tmp_path):
    stamp = time.time_ns()
    legit, folded, onto_dlq = f"fold.orders-{stamp}", f"fold.ORDERS-{stamp}", f"fold.orders-{stamp}__dlq"
    table = f"folded.fold_orders_{stamp}"
    create_topic(kafka.bootstrap, legit, 1)
    produce(kafka.bootstrap, legit, records(legit, 5))
    config = writer_config(tmp_path / "c.yaml", kafka.bootstrap, "-", "folded.{topic}", tmp_path / "wh",
                           kafka={"topic.metadata.refresh.interval.ms": "1000"},
                           table_settings={"topic": None, "topic_pattern": f"fold\\.(orders|ORDERS)-{stamp}(__dlq)?"})
    writer = spawn_writer(config)
    iceberg = catalog_of(config)
    wait_committed(iceberg, table, "tests", {(legit, 0): 5}, timeout=60, writer=writer)
    # Created later, by someone with produce rights: `folded` sorts first, yet the table stays legit's.
    for hostile in (folded, onto_dlq):
        create_topic(kafka.bootstrap, hostile, 1)
        produce(kafka.bootstrap, hostile, ((None, None, json.dumps({"n": 666, "reason": "x"}).encode(), None),))
    refused = {writer.wait_for("topic.refused", timeout=60)["topic"], writer.wait_for("topic.refused")["topic"]}
    assert refused == {folded, onto_dlq}
    produce(kafka.bootstrap, legit, records(legit, 8))
    wait_committed(iceberg, table, "tests", {(legit, 0): 13}, timeout=60, writer=writer)
    assert writer.stop() == 0, writer.log()
    lines = {e["topic"]: e for e in writer.named("topic.refused")}
    assert len(writer.named("topic.refused")) == 2  # said once each
    assert lines[folded]["table"] == table and lines[folded]["table_fed_by"] == legit
    assert lines[onto_dlq]["table"] == f"{table}__dlq" and "__dlq" in lines[onto_dlq]["reason"]
    rows = iceberg.load_table(table).scan(selected_fields=("n", "source")).to_arrow().to_pylist()
    assert {r["source"] for r in rows} == {legit} and len(rows) == 13
    assert not iceberg.table_exists(f"{table}__dlq")


def test_topics_folding_onto_one_table_wait_while_the_topics_cannot_be_listed(kafka, tmp_path, monkeypatch):
    """Which topic keeps a table several names fold onto is decided on every topic the cluster has: while
    they cannot be listed, a writer decides nothing from its own assignment (another writer, assigned the
    other topic, would keep it too) and reads none of their records; once listed, it claims and reads on."""
    stamp = time.time_ns()
    upper, lower = f"wait.ORDERS-{stamp}", f"wait.orders-{stamp}"  # upper sorts first: it keeps the table
    table = f"waited.wait_orders_{stamp}"
    for topic in (upper, lower):
        create_topic(kafka.bootstrap, topic, 1)
        produce(kafka.bootstrap, topic, records(topic, 5))
    path = writer_config(tmp_path / "c.yaml", kafka.bootstrap, "-", "waited.{topic}", tmp_path / "wh",
                         table_settings={"topic": None, "topic_pattern": f"wait\\.(orders|ORDERS)-{stamp}"})
    listing_works, listed = threading.Event(), []
    real_topic_names = service_module.topic_names

    def flaky_topic_names(settings, timeout_s):  # type: ignore[no-untyped-def]
        listed.append(listing_works.is_set())
        if not listing_works.is_set():
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "injected: metadata request failed"))
        return real_topic_names(settings, timeout_s)

    monkeypatch.setattr(service_module, "topic_names", flaky_topic_names)
    iceberg = catalog_of(path)
    with capture_logs() as logs:
        service = service_module.Service(load_config(path, environ={}))
        codes: list[int] = []
        runner = threading.Thread(target=lambda: codes.append(service.run()), daemon=True)
        runner.start()
        try:
            deadline = time.monotonic() + 60
            while len(listed) < 3:  # assigned, then tried again after a backoff, twice
                assert time.monotonic() < deadline and runner.is_alive(), (listed, logs)
                time.sleep(0.1)
            assert not iceberg.table_exists(table)  # nothing read into it while undecided
            listing_works.set()
            wait_committed(iceberg, table, "tests", {(upper, 0): 5}, timeout=60)
        finally:
            service.stop()
            runner.join(60)
    assert codes == [0]
    rows = iceberg.load_table(table).scan(selected_fields=("n", "source")).to_arrow().to_pylist()
    assert sorted((r["source"], r["n"]) for r in rows) == [(upper, n) for n in range(5)]
    events = [e["event"] for e in logs]
    assert events.count("kafka.topics_unavailable") == 1  # once for the streak
    assert "kafka.topics_listed" in events
    refused = [e for e in logs if e["event"] == "topic.refused"]
    assert [(e["topic"], e["table_fed_by"]) for e in refused] == [(lower, upper)]
