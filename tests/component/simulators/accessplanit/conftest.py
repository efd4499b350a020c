"""Fixtures: one simulator per session (reset before each test), clients per platform user, a webhook receiver."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from component.simulators.accessplanit.accessplanit_testkit import (
    ADMIN_KEY,
    INTEGRATION_KEY,
    Receiver,
    SimServer,
    running_receiver,
    sim_settings,
)


@pytest.fixture(scope="session")
def sim_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimServer]:
    with SimServer(sim_settings(tmp_path_factory.mktemp("accessplanit-sim"))) as server:
        yield server


@pytest.fixture
def sim(sim_server: SimServer) -> Iterator[httpx.Client]:
    """An unauthenticated client on a freshly reset simulator."""
    with httpx.Client(base_url=sim_server.base_url, timeout=10) as client:
        client.post("/_sim/reset").raise_for_status()
        yield client


@pytest.fixture
def api(sim: httpx.Client, sim_server: SimServer) -> Iterator[httpx.Client]:
    """A client authenticated as the Tandem integration user (900001)."""
    headers = {"Authorization": f"Bearer {INTEGRATION_KEY}"}
    with httpx.Client(base_url=f"{sim_server.base_url}/api/v2", headers=headers, timeout=10) as client:
        yield client


@pytest.fixture
def admin(sim: httpx.Client, sim_server: SimServer) -> Iterator[httpx.Client]:
    """A client authenticated as the human "Demo Admin" (900002)."""
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=f"{sim_server.base_url}/api/v2", headers=headers, timeout=10) as client:
        yield client


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as state:
        yield state
