"""Owner leases on the real Redis: one holder at a time, kept by renewing, given back only by its owner."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio import Redis

from tandem_shared.redis.lease import Leases, OwnedLeases

pytestmark = pytest.mark.integration


@pytest.fixture
def key() -> str:
    return f"test:lease:{uuid.uuid4().hex}"


async def test_one_owner_holds_the_lease_and_taking_it_again_keeps_it(redis: Redis, key: str) -> None:
    leases = Leases(redis, ttl_s=30)
    assert await leases.acquire(key, "a")
    assert not await leases.acquire(key, "b")
    await redis.pexpire(key, 1000)
    assert await leases.acquire(key, "a"), "its owner takes it again"
    assert await redis.pttl(key) > 1000, "with a fresh lease"
    assert await redis.get(key) == "a"


async def test_only_the_owner_renews_or_releases(redis: Redis, key: str) -> None:
    leases = Leases(redis, ttl_s=30)
    assert await leases.acquire(key, "a")
    assert not await leases.renew(key, "b")
    assert not await leases.release(key, "b")
    assert await redis.get(key) == "a"
    assert await leases.renew(key, "a")
    assert await leases.release(key, "a")
    assert await redis.exists(key) == 0
    assert not await leases.renew(key, "a"), "a released lease is not renewed back into existence"
    assert await redis.exists(key) == 0
    assert await leases.acquire(key, "b")


async def test_a_lease_nobody_renews_expires_and_its_old_owner_cannot_release_the_new_one(
    redis: Redis, key: str
) -> None:
    short = Leases(redis, ttl_s=0.2)
    assert await short.acquire(key, "crashed")
    await asyncio.sleep(0.4)
    assert await short.acquire(key, "survivor")
    assert not await short.release(key, "crashed")
    assert await redis.get(key) == "survivor"


async def test_an_owner_of_several_leases_gives_back_only_those_it_still_holds(redis: Redis, key: str) -> None:
    mine, theirs, lost = f"{key}:mine", f"{key}:theirs", f"{key}:lost"
    owner, other = OwnedLeases(redis, ttl_s=30), OwnedLeases(redis, ttl_s=30)
    assert await other.hold(theirs)
    assert await owner.hold(mine)
    assert not await owner.hold(theirs)
    assert await owner.hold(lost)
    await redis.delete(lost)
    assert await other.hold(lost), "an expired lease passes to another owner"
    assert await owner.hold(mine), "holding again renews"
    await owner.release_all()
    assert await redis.exists(mine) == 0
    assert await redis.exists(theirs) == 1 and await redis.exists(lost) == 1, "another owner's leases stay"
    assert await other.hold(mine)
