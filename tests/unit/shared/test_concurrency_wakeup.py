"""The Redis limiter hands a slot given back in this process straight to the oldest local waiter."""

from __future__ import annotations

import asyncio
from typing import Any

from tandem_shared.concurrency import RedisConcurrencyLimiter


class FakeRedis:
    """The limiter's two scripts and ZREM over an in-memory set (no leases expire in these tests)."""

    def __init__(self) -> None:
        self.members: set[str] = set()
        self.limit = 0

    def register_script(self, source: str) -> Any:
        async def acquire(keys: list[str], args: list[Any]) -> int:
            lease_id, limit = args[0], int(args[1])
            if len(self.members) >= limit:
                return 0
            self.members.add(lease_id)
            return 1

        async def extend(keys: list[str], args: list[Any]) -> int:
            return 1 if args[0] in self.members else 0

        return acquire if "ZCARD" in source else extend

    async def zrem(self, key: str, member: str) -> int:
        self.members.discard(member)
        return 1


async def test_a_released_slot_wakes_the_oldest_local_waiter_instead_of_waiting_out_its_backoff() -> None:
    redis = FakeRedis()
    # Backoff of an hour: a waiter can only get the slot in this test by being woken.
    limiter = RedisConcurrencyLimiter(
        redis,  # type: ignore[arg-type]
        limit=1,
        lease_s=60,
        max_wait_s=7200,
        backoff_initial_s=3600,
        backoff_max_s=3600,
    )
    order: list[str] = []
    holder_in = asyncio.Event()
    release = asyncio.Event()

    async def hold() -> None:
        async with limiter.slot("acct"):
            holder_in.set()
            await release.wait()

    async def wait_turn(name: str) -> None:
        async with limiter.slot("acct"):
            order.append(name)

    holder = asyncio.create_task(hold())
    await holder_in.wait()
    first = asyncio.create_task(wait_turn("first"))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(wait_turn("second"))
    await asyncio.sleep(0.01)
    assert order == []
    release.set()
    # The deadline only bounds a hang; without the wake-up the waiters would sleep for an hour.
    await asyncio.wait_for(asyncio.gather(holder, first, second), timeout=30)
    assert order == ["first", "second"]
    assert redis.members == set()
