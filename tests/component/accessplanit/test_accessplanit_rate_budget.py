"""The shared request budget on a real Redis: several replicas (budget objects) draw from one window."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from tandem_shared.ratelimit import BudgetExhausted, RateBudget
from tandem_shared.redis.keys import budget_key

KEY = budget_key("accessplanit", "http://127.0.0.1:1|some-api-key", "User")


async def test_replicas_share_one_window(redis: Redis) -> None:
    replica_a = RateBudget(redis, limit=3, window_s=60)
    replica_b = RateBudget(redis, limit=3, window_s=60)
    waits = [await replica_a.try_take(KEY), await replica_b.try_take(KEY), await replica_a.try_take(KEY)]
    assert waits == [0.0, 0.0, 0.0]
    fourth = await replica_b.try_take(KEY)
    assert 59 < fourth <= 60


async def test_budgets_are_per_key_and_per_endpoint(redis: Redis) -> None:
    budget = RateBudget(redis, limit=1, window_s=60)
    assert await budget.try_take(KEY) == 0
    assert await budget.try_take(budget_key("accessplanit", "http://127.0.0.1:1|some-api-key", "Company")) == 0
    assert await budget.try_take(budget_key("accessplanit", "http://127.0.0.1:1|another-key", "User")) == 0
    assert await budget.try_take(KEY) > 0


async def test_the_key_is_hashed_never_stored(redis: Redis) -> None:
    await RateBudget(redis, limit=1, window_s=60).try_take(KEY)
    names = list(await redis.keys("*"))
    assert names and not any("some-api-key" in n for n in names)


async def test_take_waits_for_a_slot_within_its_patience(redis: Redis) -> None:
    budget = RateBudget(redis, limit=1, window_s=0.3)
    await budget.take(KEY, max_wait_s=1)
    await budget.take(KEY, max_wait_s=1)  # the first slot leaves the window while waiting
    assert await redis.zcard(KEY) == 1


async def test_take_gives_up_when_the_wait_exceeds_its_patience(redis: Redis) -> None:
    budget = RateBudget(redis, limit=1, window_s=60)
    await budget.take(KEY, max_wait_s=0)
    with pytest.raises(BudgetExhausted) as raised:
        await budget.take(KEY, max_wait_s=1)
    assert raised.value.retry_after_s > 1
    assert "budget exhausted" in str(raised.value)


async def test_a_429_blocks_everyone_sharing_the_key_and_a_shorter_one_does_not_shorten_it(redis: Redis) -> None:
    budget = RateBudget(redis, limit=100, window_s=60)
    await budget.block(KEY, 30)
    await budget.block(KEY, 2)
    wait = await RateBudget(redis, limit=100, window_s=60).try_take(KEY)
    assert 28 < wait <= 30
    assert await redis.zcard(KEY) == 0
