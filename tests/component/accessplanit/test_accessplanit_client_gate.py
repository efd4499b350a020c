"""Requests beyond the pool's connections wait in the client's own gate (not in httpcore's queue), and a failed
request gives its place back."""

from __future__ import annotations

import asyncio

import httpx
from redis.asyncio import Redis

from tandem_shared.ratelimit import RateBudget
from tandem_shared.vendors.accessplanit.client import MAX_CONNECTIONS, AccessplanitClient, AccessplanitError
from tandem_shared.vendors.accessplanit.settings import AccessplanitSettings
from tandem_shared.vendors.priority import Priority


def client_over(handler: httpx.AsyncBaseTransport, redis: Redis) -> AccessplanitClient:
    http = httpx.AsyncClient(base_url="http://127.0.0.1:1", transport=handler)
    settings = AccessplanitSettings(http_timeout_s=5)
    return AccessplanitClient(http, RateBudget(redis, limit=1000, window_s=60), budget_scope="gate", settings=settings)


async def test_at_most_max_connections_in_flight_and_failures_give_their_place_back(redis: Redis) -> None:
    in_flight = peak = 0
    calls = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak, calls
        calls += 1
        if calls <= MAX_CONNECTIONS:  # the first wave fails as a network error would
            raise httpx.ConnectError("refused", request=request)
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        return httpx.Response(200, json={"results": []})

    client = client_over(httpx.MockTransport(handler), redis)
    failed = await asyncio.gather(
        *(client.users_by_email(f"f{i}@example.com", priority=Priority.LIVE) for i in range(MAX_CONNECTIONS)),
        return_exceptions=True,
    )
    assert all(isinstance(f, AccessplanitError) for f in failed)
    found = await asyncio.gather(
        *(client.users_by_email(f"u{i}@example.com", priority=Priority.LIVE) for i in range(3 * MAX_CONNECTIONS))
    )
    assert found == [[]] * (3 * MAX_CONNECTIONS), "every place given back by a failure was taken again"
    assert peak == MAX_CONNECTIONS
