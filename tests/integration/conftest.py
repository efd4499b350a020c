"""Fixtures: a client of the suite's real Redis, for the tests of Redis adapters."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from tandem_shared.redis.client import connect_url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = connect_url(redis_url)
    yield client
    await client.aclose()
