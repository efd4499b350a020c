"""Fixtures: one simulator per session (reset before each test), API clients, a second account, a receiver."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from component.simulators.mailchimp.mailchimp_testkit import (
    DEMO_KEY,
    DOI_LIST,
    SECOND_ACCOUNT,
    SECOND_KEY,
    Receiver,
    SimServer,
    running_receiver,
    sdk_client,
    sim_settings,
)


@pytest.fixture(scope="session")
def sim_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimServer]:
    with SimServer(sim_settings(tmp_path_factory.mktemp("mailchimp-sim"))) as server:
        yield server


@pytest.fixture
def sim(sim_server: SimServer) -> Iterator[httpx.Client]:
    """An unauthenticated client on a freshly reset simulator (for /_sim routes)."""
    with httpx.Client(base_url=sim_server.base_url, timeout=10) as client:
        client.post("/_sim/reset").raise_for_status()
        yield client


@pytest.fixture
def api(sim: httpx.Client, sim_server: SimServer) -> Iterator[httpx.Client]:
    """Basic auth with the demo key, as Mailchimp documents it."""
    with httpx.Client(base_url=f"{sim_server.base_url}/3.0", auth=("anystring", DEMO_KEY), timeout=10) as client:
        yield client


@pytest.fixture
def sdk(sim: httpx.Client, sim_server: SimServer) -> Any:
    return sdk_client(sim_server.base_url)


@pytest.fixture
def second(sim: httpx.Client, sim_server: SimServer) -> Iterator[httpx.Client]:
    """A second account (its own key and dc us2) owning a double opt-in audience."""
    account = {
        "account_id": SECOND_ACCOUNT,
        "api_keys": [SECOND_KEY],
        "lists": [{"id": DOI_LIST, "name": "Double opt-in", "double_optin": True}],
    }
    sim.post("/_sim/accounts", json=account).raise_for_status()
    headers = {"Authorization": f"Bearer {SECOND_KEY}"}
    with httpx.Client(base_url=f"{sim_server.base_url}/3.0", headers=headers, timeout=10) as client:
        yield client


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as state:
        yield state
