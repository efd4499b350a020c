"""Fixtures: one accessplanit simulator for these tests (reset before each), a Redis database of their own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from component.accessplanit.accessplanit_fixtures import KEY_ENV, SECRET_ENV, WEBHOOK_SECRET
from component.simulators.accessplanit.accessplanit_testkit import ADMIN_KEY, INTEGRATION_KEY, SimServer, sim_settings
from redis.asyncio import Redis

from tandem_shared.redis.client import connect_url

# These tests flush this database before each test; nothing else in the suite uses it.
REDIS_DB = 9


@pytest.fixture(scope="session")
def ap_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimServer]:
    with SimServer(sim_settings(tmp_path_factory.mktemp("ap-component"))) as server:
        yield server


@pytest.fixture
async def sim(ap_server: SimServer, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[httpx.AsyncClient]:
    """Controls of a freshly reset simulator; the instance's secrets are in the environment."""
    monkeypatch.setenv(KEY_ENV, INTEGRATION_KEY)
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)
    async with httpx.AsyncClient(base_url=ap_server.base_url, timeout=10) as client:
        (await client.post("/_sim/reset")).raise_for_status()
        yield client


@pytest.fixture
async def admin(sim: httpx.AsyncClient, ap_server: SimServer) -> AsyncIterator[httpx.AsyncClient]:
    """A person editing in accessplanit (platform user 900002)."""
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with httpx.AsyncClient(base_url=f"{ap_server.base_url}/api/v2", headers=headers, timeout=10) as client:
        yield client


@pytest.fixture
def redis_db_url(redis_url: str) -> str:
    return redis_url.rsplit("/", 1)[0] + f"/{REDIS_DB}"


@pytest.fixture
async def redis(redis_db_url: str) -> AsyncIterator[Redis]:
    client = connect_url(redis_db_url)
    await client.flushdb()
    yield client
    await client.aclose()
