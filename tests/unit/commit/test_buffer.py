import pyarrow as pa
import pytest

from tabletopic.commit.buffer import TableBuffer
from tabletopic.exceptions import OffsetsError


def rows(n: int) -> pa.Table:
    return pa.table({"x": pa.array(range(n), pa.int64())})


def test_ranges_grow_per_partition_and_offsets_must_go_up():
    buffer = TableBuffer()
    buffer.add(("t", 0), 0, 9, rows(10), now=0.0)
    buffer.add(("t", 0), 12, 14, rows(3), now=1.0)  # a gap is fine
    buffer.add(("t", 1), 5, 5, rows(1), now=1.0)
    assert (buffer.partitions[("t", 0)].first, buffer.partitions[("t", 0)].last) == (0, 14)
    assert buffer.partitions[("t", 0)].rows().num_rows == 13
    with pytest.raises(OffsetsError):
        buffer.add(("t", 0), 14, 20, rows(1), now=2.0)


def test_flush_is_due_on_interval_or_size():
    buffer = TableBuffer()
    assert not buffer.is_flush_due(now=100.0, interval_s=5, max_bytes=10**9)
    buffer.add(("t", 0), 0, 9, rows(10), now=10.0)
    assert not buffer.is_flush_due(now=14.0, interval_s=5, max_bytes=10**9)
    assert buffer.is_flush_due(now=15.0, interval_s=5, max_bytes=10**9)
    assert buffer.is_flush_due(now=10.0, interval_s=5, max_bytes=buffer.nbytes)


def test_take_some_partitions_then_put_back_ahead_of_newer_rows():
    buffer = TableBuffer()
    buffer.add(("t", 0), 0, 9, rows(10), now=0.0)
    buffer.add(("t", 1), 0, 4, rows(5), now=0.0)
    taken = buffer.take([("t", 0)])
    assert list(taken) == [("t", 0)]
    assert list(buffer.partitions) == [("t", 1)]
    buffer.add(("t", 0), 10, 11, rows(2), now=1.0)
    buffer.put_back(taken, now=2.0)
    held = buffer.partitions[("t", 0)]
    assert (held.first, held.last, held.rows().num_rows) == (0, 11, 12)
    assert buffer.take() and buffer.is_empty and buffer.opened_at is None


def test_flush_due_counts_the_interval_from_the_previous_flush_start():
    from tabletopic.commit.buffer import flush_due

    assert not flush_due(now=50.0, opened_at=None, last_flush_started=0.0, interval_s=10, nbytes=0, max_bytes=99)
    # first buffer: its own age
    assert not flush_due(now=9.0, opened_at=0.0, last_flush_started=None, interval_s=10, nbytes=1, max_bytes=99)
    assert flush_due(now=10.0, opened_at=0.0, last_flush_started=None, interval_s=10, nbytes=1, max_bytes=99)
    # steady input: a buffer opened after a 3 s flush is due 10 s after that flush began, not 10 s after it opened
    assert not flush_due(now=19.0, opened_at=13.0, last_flush_started=10.0, interval_s=10, nbytes=1, max_bytes=99)
    assert flush_due(now=20.0, opened_at=13.0, last_flush_started=10.0, interval_s=10, nbytes=1, max_bytes=99)
    # a quiet table: its first record in a while is due at once, still at most one commit per interval
    assert flush_due(now=500.0, opened_at=499.0, last_flush_started=10.0, interval_s=10, nbytes=1, max_bytes=99)
    assert flush_due(now=11.0, opened_at=11.0, last_flush_started=10.5, interval_s=10, nbytes=99, max_bytes=99)
