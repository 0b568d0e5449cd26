"""Dead letters with bounds: huge keys and values kept as a prefix and a digest, short messages, one log
line per chunk, and a dead-letter rate limit that stops the table at the record past it."""

import datetime as dt
import hashlib

import pytest
from pyiceberg.catalog.sql import SqlCatalog
from structlog.testing import capture_logs

from tabletopic.config import TableConfig
from tabletopic.core.backoff import RetryPolicy
from tabletopic.core.reasons import Reason
from tabletopic.core.records import RecordChunk
from tabletopic.deadletter import rows
from tabletopic.deadletter.flood import DeadLetterFlood, DeadLetterRate
from tabletopic.decode.base import BadValue
from tabletopic.exceptions import ConfigError
from tabletopic.sink import TableSink

HUGE = b"x" * (9 * 1024 * 1024)


@pytest.fixture
def catalog(tmp_path):
    return SqlCatalog("test", uri=f"sqlite:///{tmp_path}/catalog.db", warehouse=f"file://{tmp_path}")


def chunk(values, keys=None, first=0):
    n = len(values)
    return RecordChunk("topic", 0, list(range(first, first + n)), keys or [b"k"] * n, values, [1767225600000] * n,
                       [None] * n)


def test_a_huge_value_and_key_are_kept_as_a_prefix_with_the_digest_of_the_whole():
    records = chunk([HUGE, b"small"], keys=[HUGE[:100_000], b"k"])
    bad = [BadValue(0, "value of 9437184 bytes is over max_record_bytes", Reason.OVERSIZED),
           BadValue(1, "not JSON", Reason.MALFORMED_JSON)]
    letters = rows.dead_letter_rows(records, bad, dt.datetime.now(dt.UTC)).to_pylist()
    assert len(letters[0][rows.VALUE]) == rows.MAX_KEPT_BYTES == 64 * 1024
    assert len(letters[0]["_kafka_key"]) == rows.MAX_KEPT_BYTES
    message = letters[0][rows.MESSAGE]
    assert hashlib.sha256(HUGE).hexdigest() in message and "9437184 bytes" in message
    assert hashlib.sha256(HUGE[:100_000]).hexdigest() in message
    assert message.endswith("over max_record_bytes") and rows.is_truncated(message)
    # a small record is kept whole, and can be replayed
    assert (letters[1][rows.VALUE], letters[1]["_kafka_key"], letters[1][rows.MESSAGE]) == (b"small", b"k", "not JSON")
    assert not rows.is_truncated(letters[1][rows.MESSAGE])


def test_the_message_is_cut_but_its_markers_stay():
    letters = rows.dead_letter_rows(chunk([HUGE]), [BadValue(0, "why " * 10_000)], dt.datetime.now(dt.UTC))
    message = letters[rows.MESSAGE][0].as_py()
    assert len(message) == rows.MAX_MESSAGE_CHARS and message.endswith("...") and rows.is_truncated(message)


def test_bad_records_are_logged_once_per_chunk_with_counts_by_reason(catalog):
    sink = TableSink(TableConfig(table="ns.t", topic="topic"), catalog, "g", "w", RetryPolicy())
    values = [b'{"a": 1}', *([b"broken"] * 50), *([b"[1]"] * 20), b'{"a": 2}']
    with capture_logs() as logs:
        sink.ingest(chunk(values, first=100), now=0.0)
    lines = [e for e in logs if e["event"] == "record.dead_letter"]
    assert len(lines) == 1
    assert {k: lines[0][k] for k in ("topic", "partition", "first_offset", "last_offset", "records", "reasons")} == {
        "topic": "topic", "partition": 0, "first_offset": 101, "last_offset": 170, "records": 70,
        "reasons": {"malformed_json": 70}}
    assert sum(held.rows().num_rows for held in sink.dead_letters.take().values()) == 70


def test_the_rate_counts_the_last_minute_only():
    rate = DeadLetterRate(10)
    rate.spend(7, now=0.0)
    assert rate.room(30.0) == 3
    rate.spend(3, now=30.0)
    assert rate.room(59.9) == 0
    assert rate.room(60.0) == 7  # the first seven left the window
    assert DeadLetterRate(None).room(0.0) is None


def test_past_the_dead_letter_rate_the_table_halts_at_that_record_and_keeps_what_came_before(catalog):
    spec = TableConfig(table="ns.t", topic="topic", max_dead_letters_per_minute=3)
    sink = TableSink(spec, catalog, "g", "w", RetryPolicy())
    sink.ingest(chunk([b'{"a": 0}', b"bad"]), now=0.0)  # offsets 0, 1: one dead letter
    values = [b'{"a": 2}', b"bad", b'{"a": 4}', b"bad", b"bad", b'{"a": 7}']  # offsets 2..7
    with pytest.raises(DeadLetterFlood) as raised:
        sink.ingest(chunk(values, first=2), now=10.0)
    flood = raised.value
    assert (flood.table, flood.reason, flood.topic, flood.partition, flood.offset) == (
        "ns.t", "dead_letter_flood", "topic", 0, 6)
    assert "topic/0 offset 6" in flood.error and "max_dead_letters_per_minute (3)" in flood.error
    # Offsets 0..5 are taken (rows 0, 2, 4; dead letters 1, 3, 5); 6 onwards is read again.
    sink.flush()
    assert sorted(catalog.load_table("ns.t").scan().to_arrow()["a"].to_pylist()) == [0, 2, 4]
    assert sorted(catalog.load_table("ns.t__dlq").scan().to_arrow()["_kafka_offset"].to_pylist()) == [1, 3, 5]
    assert sink.start_offsets([("topic", 0)]) == {("topic", 0): 6}
    # A minute later the window has room again: the table goes on from the record it stopped at.
    sink.ingest(chunk(values[4:], first=6), now=70.0)
    sink.flush()
    assert sorted(catalog.load_table("ns.t__dlq").scan().to_arrow()["_kafka_offset"].to_pylist()) == [1, 3, 5, 6]
    assert sorted(catalog.load_table("ns.t").scan().to_arrow()["a"].to_pylist()) == [0, 2, 4, 7]
    assert sink.start_offsets([("topic", 0)]) == {("topic", 0): 8}


def test_the_rate_limit_needs_dead_letters(tmp_path):
    from tests.unit.test_resolver import config_of

    with pytest.raises(ConfigError, match="max_dead_letters_per_minute"):
        config_of(tmp_path, {"table": "a.t", "topic": "t", "errors": "skip", "max_dead_letters_per_minute": 5})


def test_a_topic_copy_of_a_letter_kept_in_part_says_the_whole_length():
    from tabletopic.deadletter.topic import TRUNCATED, copies_of, fitted

    letters = rows.dead_letter_rows(chunk([HUGE]), [BadValue(0, "too big", Reason.OVERSIZED)], dt.datetime.now(dt.UTC))
    assert rows.cut_length(letters[rows.MESSAGE][0].as_py(), "value") == len(HUGE)
    assert rows.cut_length(letters[rows.MESSAGE][0].as_py(), "key") is None
    [copy] = copies_of(letters)
    assert copy.value == HUGE[:rows.MAX_KEPT_BYTES] and (TRUNCATED, str(len(HUGE)).encode()) in copy.headers
    smaller = fitted(copy, 10_000)  # cut again for a small producer limit: still the whole length, once
    assert smaller is not None and [h for h in smaller.headers if h[0] == TRUNCATED] == [
        (TRUNCATED, str(len(HUGE)).encode())]


def test_the_rate_limit_is_refused_on_a_routed_table(tmp_path):
    from tests.unit.test_resolver import config_of

    with pytest.raises(ConfigError, match="route_field"):
        config_of(tmp_path, {"table": "a.t", "topic": "t", "format": "json", "route_field": "r",
                             "route_tables": {"x": "a.x"}, "max_dead_letters_per_minute": 5})


def test_a_backfill_has_no_dead_letter_rate_limit(tmp_path):
    from tabletopic.backfill import backfill_target
    from tests.unit.test_resolver import config_of

    config = config_of(tmp_path, {"table": "a.t", "topic": "t", "max_dead_letters_per_minute": 5})
    assert backfill_target(config, "t", "a.t", None).spec.max_dead_letters_per_minute is None
