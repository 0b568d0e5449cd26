"""The one backoff policy gives exactly the delays each retry loop had before it was unified."""

from __future__ import annotations

import pytest

from tabletopic.commit.pressure import MAX_TABLE_BACKOFF_S, table_backoff
from tabletopic.compaction import expire, rewrite
from tabletopic.core.backoff import RetryPolicy
from tabletopic.supervisor import MAX_BACKOFF_S, restart_delay

ATTEMPTS = range(0, 2000)  # past the point where 2**n overflows a float


def test_table_backoff_doubles_from_one_second_up_to_its_cap() -> None:
    for n in ATTEMPTS[:60]:
        assert table_backoff(n) == float(min(MAX_TABLE_BACKOFF_S, 2 ** max(0, n - 1)))
    assert table_backoff(10_000) == MAX_TABLE_BACKOFF_S


def test_restart_delay_doubles_from_one_second_up_to_its_cap() -> None:
    for n in ATTEMPTS[:60]:
        assert restart_delay(n) == float(min(MAX_BACKOFF_S, 2 ** max(0, n - 1)))
    assert restart_delay(10_000) == MAX_BACKOFF_S


@pytest.mark.parametrize("module", [expire, rewrite])
def test_compaction_retries_grow_linearly_up_to_a_second(module: object) -> None:
    policy = module.RETRY  # type: ignore[attr-defined]
    for n in range(1, 200):
        assert policy.backoff(n) == pytest.approx(min(1.0, 0.02 * n))


def test_committer_policy_jitters_between_half_and_all_of_the_delay() -> None:
    policy = RetryPolicy()
    for n in ATTEMPTS:
        base = min(policy.max_backoff_s, policy.initial_backoff_s * 2.0 ** min(n - 1, 64)) if n >= 1 \
            else policy.initial_backoff_s
        assert base * 0.5 <= policy.backoff(n) <= base
