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
