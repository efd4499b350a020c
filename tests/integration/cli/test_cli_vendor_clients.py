"""The CLI's vendor requests are paid from the services' shared budget when Tandem's Redis answers, and from a
budget of its own (with a note) when it does not."""

from __future__ import annotations

import pytest

from tandem_cli.vendors import vendor_clients
from tandem_devstack.processes import free_port
from tandem_shared.ratelimit import RateBudget
from tandem_shared.vendors.budget import LocalRateBudget


async def test_the_shared_budget_when_redis_answers(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    async with vendor_clients(timeout_s=5) as clients:
        assert isinstance(clients.accessplanit.budget, RateBudget)
    assert capsys.readouterr().err == ""


async def test_a_budget_of_its_own_and_a_note_when_redis_does_not_answer(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    async with vendor_clients(timeout_s=5) as clients:
        assert isinstance(clients.accessplanit.budget, LocalRateBudget)
    assert "not in the services' shared budget" in capsys.readouterr().err
