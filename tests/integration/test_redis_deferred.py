"""The deferred set on the real Redis: one arrival per user, only moved forward, removed only by a later read."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from tandem_shared.redis.deferred import Deferral, RedisDeferredDeliveries
from tandem_shared.redis.keys import poller_deferred_key

pytestmark = pytest.mark.integration


@pytest.fixture
async def instance_id(redis: Redis) -> AsyncIterator[str]:
    instance = f"deferred-{uuid.uuid4().hex[:8]}"
    yield instance
    await redis.delete(poller_deferred_key(instance))


async def test_a_later_delivery_moves_the_arrival_forward_and_an_earlier_one_never_back(
    redis: Redis, instance_id: str
) -> None:
    users = RedisDeferredDeliveries(redis)
    await users.defer(instance_id, "1", 2_000)
    await users.defer(instance_id, "1", 1_000)  # a delivery retried late
    await users.defer(instance_id, "2", 1_500)
    assert await users.due(instance_id, 10_000, limit=10) == [Deferral("2", 1_500), Deferral("1", 2_000)]
    await users.defer(instance_id, "1", 3_000)
    assert await users.due(instance_id, 2_500, limit=10) == [Deferral("2", 1_500)], "only arrivals before the bound"
    assert await users.due(instance_id, 10_000, limit=1) == [Deferral("2", 1_500)], "bounded, oldest first"


async def test_a_read_settles_only_deliveries_that_arrived_before_it_started(redis: Redis, instance_id: str) -> None:
    users = RedisDeferredDeliveries(redis)
    await users.defer(instance_id, "1", 1_000)
    await users.defer(instance_id, "2", 5_000)
    assert await users.settle(instance_id, ["1", "2", "3"], read_at_ms=2_000) == 1
    assert await users.due(instance_id, 10_000, limit=10) == [Deferral("2", 5_000)]
    assert await users.settle(instance_id, [], read_at_ms=9_000) == 0
    assert await users.settle(instance_id, ["2"], read_at_ms=5_000) == 1
    assert await users.due(instance_id, 10_000, limit=10) == []


async def test_the_writer_reads_the_arrival_ingest_deferred(redis: Redis, instance_id: str) -> None:
    deferred = RedisDeferredDeliveries(redis)
    assert await deferred.arrived_ms(instance_id, "1") is None
    await deferred.defer(instance_id, "1", 2_000)
    await deferred.defer(instance_id, "1", 1_000)
    assert await deferred.arrived_ms(instance_id, "1") == 2_000
    await deferred.settle(instance_id, ["1"], read_at_ms=2_000)
    assert await deferred.arrived_ms(instance_id, "1") is None
