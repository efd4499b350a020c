"""Fixtures: one Mailchimp simulator for this directory (reset before each test) and a client for its controls."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from component.simulators.mailchimp.mailchimp_testkit import SimServer, sim_settings


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
