"""Dead-letter replay against a real SQLite catalog: after a fix the dead letters land in the table once."""

import dataclasses
import json

import pytest
from pyiceberg.catalog.sql import SqlCatalog

from tabletopic.commit.committer import append_files, write_data_files
from tabletopic.config import TableConfig
from tabletopic.core.backoff import RetryPolicy
from tabletopic.core.records import RecordChunk
from tabletopic.deadletter.rows import dlq_identifier
from tabletopic.replay import reads_topic, replay
from tabletopic.sink import TableSink


@pytest.fixture
def catalog(tmp_path):
    return SqlCatalog("test", uri=f"sqlite:///{tmp_path}/catalog.db", warehouse=f"file://{tmp_path}")


def chunk(values, first=0):
    n = len(values)
    return RecordChunk("topic", 0, list(range(first, first + n)), [b"k"] * n, values, [1767225600000] * n,
                       [[("h", b"v")]] * n)


def test_dead_letters_replayed_after_a_fix_land_in_the_table_once(catalog):
    strict = TableConfig(table="ns.t", topic="topic", json_drift="strict")
    writer = TableSink(strict, catalog, "g", "w", RetryPolicy())
    writer.ingest(chunk([b'{"a": 1}']), now=0.0)
    writer.flush()
    writer.ingest(chunk([b'{"a": 2, "b": "new"}', b'{"a": 3}', b"broken"], first=1), now=0.0)
    writer.flush()
    letters = catalog.load_table(dlq_identifier("ns.t"))
    assert sorted(letters.scan().to_arrow()["reason"].to_pylist()) == ["malformed_json", "unknown_field"]

    fixed = dataclasses.replace(strict, json_drift="evolve")
    dry = replay(catalog, fixed, "g", None, dry_run=True)
    assert (dry.chosen, dry.replayed, dry.still_bad, dry.appended) == (2, 1, 1, 0)
    report = replay(catalog, fixed, "g", None, reason="unknown_field")
    assert (report.chosen, report.replayed, report.appended) == (1, 1, 1)

    rows = catalog.load_table("ns.t").scan(selected_fields=("a", "b", "_kafka_offset", "_kafka_headers")).to_arrow()
    assert sorted((r["a"], r["b"], r["_kafka_offset"]) for r in rows.to_pylist()) == [
        (1, None, 0), (2, "new", 1), (3, None, 2)]
    remaining = catalog.load_table(dlq_identifier("ns.t")).scan().to_arrow()
    assert remaining["reason"].to_pylist() == ["malformed_json"]
    # Offsets are untouched: the replay snapshot carries none, recovery finds the writer's.
    assert writer.start_offsets([("topic", 0)]) == {("topic", 0): 4}


def test_a_replay_that_died_before_removing_its_dead_letters_finishes_without_doubling(catalog):
    strict = TableConfig(table="ns.t", topic="topic", json_drift="strict")
    writer = TableSink(strict, catalog, "g", "w", RetryPolicy())
    writer.ingest(chunk([b'{"a": 1}']), now=0.0)
    writer.ingest(chunk([b'{"a": 2, "b": "x"}'], first=1), now=0.0)
    writer.flush()
    letters = catalog.load_table(dlq_identifier("ns.t"))
    kept = letters.scan().to_arrow()
    fixed = dataclasses.replace(strict, json_drift="evolve")
    replay(catalog, fixed, "g", None)
    # As if step 3 never ran: the dead letter is back beside its replayed row.
    letters = catalog.load_table(dlq_identifier("ns.t"))
    append_files(letters, write_data_files(letters, kept), {})

    again = replay(catalog, fixed, "g", None)
    assert (again.replayed, again.appended) == (1, 0)
    assert sorted(catalog.load_table("ns.t").scan().to_arrow()["a"].to_pylist()) == [1, 2]
    assert catalog.load_table(dlq_identifier("ns.t")).scan().to_arrow().num_rows == 0


def test_a_dead_letter_kept_in_part_is_refused_and_one_kept_whole_comes_back_whole(catalog):
    strict = TableConfig(table="ns.t", topic="topic", json_drift="strict")
    writer = TableSink(strict, catalog, "g", "w", RetryPolicy())
    writer.ingest(chunk([b'{"a": 1}']), now=0.0)
    writer.flush()
    whole = json.dumps({"a": 2, "b": "w" * 60_000}).encode()
    cut = json.dumps({"a": 3, "b": "c" * 70_000}).encode()
    writer.ingest(chunk([whole, cut], first=1), now=0.0)
    writer.flush()

    report = replay(catalog, dataclasses.replace(strict, json_drift="evolve"), "g", None)
    assert (report.chosen, report.replayed, report.appended, report.unrestorable) == (2, 1, 1, 1)
    rows = catalog.load_table("ns.t").scan(selected_fields=("a", "b")).to_arrow().to_pylist()
    assert sorted((r["a"], r["b"]) for r in rows) == [(1, None), (2, "w" * 60_000)]
    left = catalog.load_table(dlq_identifier("ns.t")).scan().to_arrow()
    assert left["_kafka_offset"].to_pylist() == [2] and len(left["_kafka_value"][0].as_py()) == 64 * 1024


def test_dead_letters_of_a_topic_the_table_does_not_read_are_refused(catalog):
    strict = TableConfig(table="ns.t", topic="topic", json_drift="strict")
    writer = TableSink(strict, catalog, "g", "w", RetryPolicy())
    writer.ingest(chunk([b'{"a": 1}']), now=0.0)
    writer.flush()
    writer.ingest(chunk([b'{"a": 2, "b": "x"}'], first=1), now=0.0)
    writer.flush()
    # A hostile topic whose table name folded onto the dead-letter table (before topics were refused).
    hostile = TableSink(dataclasses.replace(strict, topic="shop.attacker"), catalog, "g", "w", RetryPolicy())
    hostile.ingest(RecordChunk("shop.attacker", 0, [0], [None], [b'{"a": 666, "b": "evil"}'], [None], [None]),
                   now=0.0)
    hostile.flush()

    fixed = dataclasses.replace(strict, json_drift="evolve")
    report = replay(catalog, fixed, "g", None)
    assert (report.chosen, report.foreign, report.replayed, report.appended) == (2, 1, 1, 1)
    assert sorted(catalog.load_table("ns.t").scan().to_arrow()["a"].to_pylist()) == [1, 2]
    left = catalog.load_table(dlq_identifier("ns.t")).scan().to_arrow()
    assert left["_kafka_topic"].to_pylist() == ["shop.attacker"]
    # a pattern entry reads the topics it matches, and only into its own table
    fan_in = TableConfig(table="ns.t", topic_pattern="shop\\..*")
    assert reads_topic(fan_in, "shop.attacker") and not reads_topic(fan_in, "other")
    per_topic = TableConfig(table="ns.{topic}", topic_pattern="shop\\..*")
    assert not reads_topic(per_topic, "shop.attacker")
