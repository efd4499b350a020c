"""Fixtures: one Mailchimp simulator for this directory (reset before each test) and a client for its controls;
for the writer's tests, its API keys, instance, concurrency limiter and a client of the simulated Marketing API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from component.mailchimp.writer_kit import KEY_VAR, WRONG_KEY_VAR, make_instance
from component.simulators.mailchimp.mailchimp_testkit import DEMO_KEY, SimServer, sim_settings

from tandem_shared.concurrency import LocalConcurrencyLimiter
from tandem_shared.contracts import InstanceConfig


@pytest.fixture(scope="session")
def mc_sim_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimServer]:
    with SimServer(sim_settings(tmp_path_factory.mktemp("mailchimp-sim-tandem"))) as server:
        yield server


@pytest.fixture
async def mc_sim(mc_sim_server: SimServer) -> AsyncIterator[httpx.AsyncClient]:
    """The simulator's /_sim controls, freshly reset."""
    async with httpx.AsyncClient(base_url=mc_sim_server.base_url, timeout=10) as client:
        (await client.post("/_sim/reset")).raise_for_status()
        yield client


@pytest.fixture
def mailchimp_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """The variables `make_instance`'s key references: the simulator's key and one it does not know."""
    monkeypatch.setenv(KEY_VAR, DEMO_KEY)
    monkeypatch.setenv(WRONG_KEY_VAR, "ffffffffffffffffffffffffffffffff-us1")


@pytest.fixture
def instance(mc_sim_server: SimServer) -> InstanceConfig:
    return make_instance(mc_sim_server.base_url)


@pytest.fixture
def limiter() -> LocalConcurrencyLimiter:
    return LocalConcurrencyLimiter(limit=10, max_wait_s=10)


@pytest.fixture
async def api(mc_sim_server: SimServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"{mc_sim_server.base_url}/3.0", auth=("x", DEMO_KEY), timeout=10) as c:
        yield c
