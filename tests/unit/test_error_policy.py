"""The error policy (sink/error_policy.py): dlq, skip, fail and the dead-letter flood limit. Pure."""

import pytest

from tabletopic.core.reasons import Reason
from tabletopic.core.records import RecordChunk
from tabletopic.deadletter.flood import DeadLetterFlood
from tabletopic.decode.base import BadValue
from tabletopic.exceptions import RecordError
from tabletopic.sink.error_policy import FloodLimit, decide

# Offsets with a gap (a compacted topic, a transaction marker): 10 11 12 15 16 17.
OFFSETS = [10, 11, 12, 15, 16, 17]


def chunk():
    n = len(OFFSETS)
    return RecordChunk("orders", 3, OFFSETS, [None] * n, [b"{}"] * n, [0] * n, [None] * n)


def bad(*indices):
    return [BadValue(i, f"bad {i}", Reason.MALFORMED_JSON) for i in indices]


def test_dlq_makes_every_bad_record_a_dead_letter_and_takes_the_whole_chunk():
    verdict = decide("dlq", "ns.t", chunk(), bad(1, 3), last=17)
    assert [b.index for b in verdict.dead_letters] == [1, 3]
    assert not verdict.skipped and verdict.stop is None and verdict.last == 17


def test_dlq_keeps_the_range_the_chunk_stands_for():
    """A routed table's share of a bigger range: what is taken covers the whole range."""
    verdict = decide("dlq", "ns.t", chunk(), bad(0), last=25)
    assert verdict.last == 25 and verdict.stop is None


def test_skip_drops_the_bad_records_and_takes_the_whole_chunk():
    verdict = decide("skip", "ns.t", chunk(), bad(0, 5), last=17)
    assert [b.index for b in verdict.skipped] == [0, 5]
    assert not verdict.dead_letters and verdict.stop is None and verdict.last == 17


def test_skip_ignores_a_flood_limit():
    verdict = decide("skip", "ns.t", chunk(), bad(0, 1, 2), last=17, flood=FloodLimit(per_minute=1, in_window=1))
    assert len(verdict.skipped) == 3 and verdict.stop is None


def test_fail_stops_at_the_first_bad_record_naming_it_and_takes_those_before():
    verdict = decide("fail", "ns.t", chunk(), bad(3, 4), last=17)
    assert isinstance(verdict.stop, RecordError)
    assert (verdict.stop.topic, verdict.stop.partition, verdict.stop.offset) == ("orders", 3, 15)
    assert verdict.stop.reason == "malformed_json: bad 3"
    assert verdict.stop_at == 3 and verdict.last == 12  # the last record taken, not the gap after it
    assert not verdict.dead_letters and not verdict.skipped


def test_fail_on_the_first_record_takes_nothing():
    verdict = decide("fail", "ns.t", chunk(), bad(0), last=17)
    assert isinstance(verdict.stop, RecordError) and verdict.stop.offset == 10 and verdict.stop_at == 0


def test_dlq_within_the_flood_limit_takes_all():
    verdict = decide("dlq", "ns.t", chunk(), bad(1, 2), last=17, flood=FloodLimit(per_minute=5, in_window=3))
    assert len(verdict.dead_letters) == 2 and verdict.stop is None and verdict.last == 17


def test_dlq_past_the_flood_limit_stops_at_the_first_record_over_it():
    verdict = decide("dlq", "ns.t", chunk(), bad(0, 2, 3, 5), last=17, flood=FloodLimit(per_minute=5, in_window=3))
    assert [b.index for b in verdict.dead_letters] == [0, 2]  # the room left in the minute
    assert isinstance(verdict.stop, DeadLetterFlood)
    assert (verdict.stop.topic, verdict.stop.partition, verdict.stop.offset) == ("orders", 3, 15)
    assert verdict.stop.table == "ns.t" and verdict.stop.reason == "dead_letter_flood"
    assert "6 dead letters in the last minute" in verdict.stop.error  # 3 before, 2 now, and this one
    assert verdict.stop_at == 3 and verdict.last == 14  # up to the record over the limit, its gap included


@pytest.mark.parametrize("in_window", [5, 7])
def test_dlq_with_no_room_left_takes_nothing_from_the_first_bad_record(in_window):
    verdict = decide("dlq", "ns.t", chunk(), bad(2, 4), last=17, flood=FloodLimit(per_minute=5, in_window=in_window))
    assert not verdict.dead_letters
    assert isinstance(verdict.stop, DeadLetterFlood) and verdict.stop.offset == 12 and verdict.stop_at == 2
    assert verdict.last == 11
