"""A replay's throttle (tabletopic/core/throttle.py): how long to wait, and a limit split between readers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tabletopic.core.throttle import Throttle, rate_shares, throttle_wait


def test_the_throttle_waits_only_what_keeps_the_rate_under_its_limit() -> None:
    assert throttle_wait(1000, 1.0, 100.0) == 9.0
    assert throttle_wait(1000, 20.0, 100.0) == 0.0  # slower than the limit already
    assert throttle_wait(0, 0.0, 100.0) == 0.0
    assert throttle_wait(1000, 0.0, 100.0) == 10.0  # no time elapsed yet
    assert throttle_wait(10**9, 0.0, None) == 0.0  # no limit
    assert throttle_wait(10**9, 0.0, 0.0) == 0.0  # 0: no limit, never an endless wait


def test_a_limit_is_split_by_the_records_each_reader_has() -> None:
    assert rate_shares(1000.0, [300, 100]) == [750.0, 250.0]
    assert rate_shares(None, [300, 100]) == [None, None]
    assert rate_shares(1000.0, [0, 0]) == [500.0, 500.0]
    assert rate_shares(1e308, [3, 1]) == [0.75e308, 0.25e308]  # no overflow to inf


@given(st.floats(min_value=1.0, max_value=1e7), st.lists(st.integers(min_value=0, max_value=10**9), min_size=1,
                                                         max_size=64))
def test_shares_add_up_to_the_limit_and_none_is_zero(limit: float, records: list[int]) -> None:
    shares = rate_shares(limit, records)
    assert all(share is not None and share > 0 for share in shares)  # a zero limit would mean no limit
    if sum(records) > 0 and all(records):
        assert sum(s for s in shares if s is not None) == pytest.approx(limit)
    # each reader needs about the same time: its records over its share
    times = [n / s for n, s in zip(records, shares, strict=True) if n and s]
    if times:
        assert max(times) == pytest.approx(min(times))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_stall_saves_up_at_most_a_burst_of_reading() -> None:
    clock = Clock()
    pace = Throttle(1000.0, clock, burst_s=1.0)
    assert pace.wait(0) == 0.0
    assert pace.wait(500) == 0.5  # half a second ahead of the rate
    clock.now += 30.0  # a commit retried for 30 s: no reading meanwhile
    assert pace.wait(500) == 0.0
    # What it may read at once is a burst (1 s: 1,000 records), not the 30 s it did not read.
    assert pace.wait(1500) == 0.0
    assert pace.wait(2000) == 0.5
    assert pace.wait(30_500) > 28.0


def test_without_a_limit_it_never_waits() -> None:
    assert Throttle(None).wait(10**9) == 0.0
    assert Throttle(0.0).wait(10**9) == 0.0
