"""The writer's authoritative read of accessplanit against the simulator: one user read at AUTHORITATIVE_READ, and a
repair written back only when Tandem's write really landed over the person's change."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from component.accessplanit.accessplanit_fixtures import command, create_user, instance, requests, users
from component.simulators.accessplanit.accessplanit_testkit import SimServer
from redis.asyncio import Redis

from tandem_shared.contracts import CheckedField, InstanceConfig, SourceCheck, SyncCommand, System
from tandem_shared.sync.rules import field_digest
from tandem_shared.vendors.accessplanit.client import AccessplanitClient, AccessplanitClients
from tandem_shared.vendors.accessplanit.settings import AccessplanitSettings
from tandem_shared.vendors.priority import Priority
from tandem_writer.source_check import AccessplanitUserReader, SourceCheckedTarget
from tandem_writer.targets.accessplanit import AccessplanitTarget

EMAIL = "ada@example.com"


@pytest.fixture
def tenant(ap_server: SimServer, sim: httpx.AsyncClient) -> InstanceConfig:
    return instance(ap_server.base_url)


@pytest.fixture
async def clients(redis: Redis) -> AsyncIterator[AccessplanitClients]:
    clients = AccessplanitClients(redis, AccessplanitSettings(http_timeout_s=2.0, budget_max_wait_s=1.0))
    yield clients
    await clients.close()


@pytest.fixture
def priorities(monkeypatch: pytest.MonkeyPatch) -> list[Priority]:
    """The priority class each request paid the budget with."""
    paid: list[Priority] = []
    take = AccessplanitClient._take_budget

    async def spy(self: AccessplanitClient, key: str, *, action: str, priority: Priority) -> None:
        paid.append(priority)
        await take(self, key, action=action, priority=priority)

    monkeypatch.setattr(AccessplanitClient, "_take_budget", spy)
    return paid


def spec(**raced: str) -> SourceCheck:
    """Forenames "Hedy" (the person's change) raced Tandem's write of `raced["Forenames"]`."""
    fields = {
        name: CheckedField(source_field=name, digest=field_digest("Hedy"), raced=[field_digest(value)])
        for name, value in raced.items()
    }
    return SourceCheck(system=System.ACCESSPLANIT, email=EMAIL, fields=fields, ts_ms=1)


def repair(user_id: str, **raced: str) -> SyncCommand:
    written_back = command({"Email": EMAIL, "Forenames": "Hedy"})
    identity = written_back.identity.model_copy(update={"accessplanit_user_id": user_id})
    return written_back.model_copy(update={"identity": identity, "source_check": spec(**raced)})


async def test_a_user_is_read_by_its_id_at_the_authoritative_read_priority(
    clients: AccessplanitClients,
    tenant: InstanceConfig,
    admin: httpx.AsyncClient,
    sim: httpx.AsyncClient,
    priorities: list[Priority],
) -> None:
    user = await create_user(admin, CustomFields={"Mailchimp Company": "ACME"})
    reader = AccessplanitUserReader(clients)

    found = await reader.read(tenant, spec(Forenames="Grace"), user["ID"])

    assert found is not None
    assert (found["ID"], found["Forenames"], found["custom:Mailchimp Company"]) == (user["ID"], "Ada", "ACME")
    assert priorities == [Priority.AUTHORITATIVE_READ]
    assert await requests(sim, "GET", "/api/v2/User") == 1


async def test_without_a_user_id_the_user_the_target_would_write_is_read_and_a_missing_one_is_none(
    clients: AccessplanitClients, tenant: InstanceConfig, admin: httpx.AsyncClient, priorities: list[Priority]
) -> None:
    reader = AccessplanitUserReader(clients)
    assert await reader.read(tenant, spec(Forenames="Grace"), None) is None
    assert await reader.read(tenant, spec(Forenames="Grace"), "99999") is None

    await create_user(admin, Forenames="Augusta")
    newest = await create_user(admin, Forenames="Lin")
    found = await reader.read(tenant, spec(Forenames="Grace"), None)
    assert found is not None and found["ID"] == newest["ID"]
    assert set(priorities) == {Priority.AUTHORITATIVE_READ}


async def _write(clients: AccessplanitClients, tenant: InstanceConfig, repair: SyncCommand) -> Any:
    target = AccessplanitTarget(clients)
    checked = SourceCheckedTarget(target, {System.ACCESSPLANIT: AccessplanitUserReader(clients)}, None)
    return await checked.write(repair, tenant)


async def test_a_repair_is_written_back_over_tandems_write_and_skipped_when_that_write_landed_first(
    clients: AccessplanitClients, tenant: InstanceConfig, admin: httpx.AsyncClient, sim: httpx.AsyncClient
) -> None:
    user = await create_user(admin, Forenames="Grace")  # Tandem's "Grace" landed over the person's "Hedy"

    outcome = await _write(clients, tenant, repair(user["ID"], Forenames="Grace"))

    assert outcome.ok and outcome.wrote, outcome.summary
    assert "Re-read from accessplanit: Forenames holds 'Grace'" in outcome.summary
    [after] = await users(admin, EMAIL)
    assert after["Forenames"] == "Hedy"
    assert await requests(sim, "PUT", "/api/v2/User/{user_id}") == 1

    # Read again, accessplanit now holds "Hedy": the same repair has nothing left to do and writes nothing.
    again = await _write(clients, tenant, repair(user["ID"], Forenames="Grace"))

    assert again.ok and not again.wrote
    assert "already holds this change's value 'Hedy'" in again.summary
    assert await requests(sim, "PUT", "/api/v2/User/{user_id}") == 1
