"""The accessplanit target against the simulator: find by email, create in the default account, update, classify."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import pytest
from component.accessplanit.accessplanit_fixtures import command, control, create_user, instance, requests, users
from component.simulators.accessplanit.accessplanit_testkit import SimServer
from redis.asyncio import Redis

from tandem_shared.contracts import InstanceConfig, Operation, SyncCommand
from tandem_shared.vendors.accessplanit.client import AccessplanitClients
from tandem_shared.vendors.accessplanit.settings import AccessplanitSettings
from tandem_writer.domain.source_check import CheckResult
from tandem_writer.targets.accessplanit import AccessplanitTarget

ADA = {"Email": "ada@example.com", "Forenames": "Ada", "Surname": "Lovelace"}


def settings(**overrides: Any) -> AccessplanitSettings:
    return AccessplanitSettings(**{"http_timeout_s": 2.0, "budget_max_wait_s": 1.0, **overrides})


@pytest.fixture
def tenant(ap_server: SimServer, sim: httpx.AsyncClient) -> InstanceConfig:
    return instance(ap_server.base_url)


@pytest.fixture
async def target(redis: Redis) -> AsyncIterator[AccessplanitTarget]:
    target = AccessplanitTarget(AccessplanitClients(redis, settings()))
    yield target
    await target.close()


async def test_a_new_contact_becomes_one_user_in_the_default_account(
    target: AccessplanitTarget, tenant: InstanceConfig, admin: httpx.AsyncClient
) -> None:
    outcome = await target.write(command(ADA), tenant)
    assert outcome.ok, outcome.summary
    [created] = await users(admin, "ada@example.com")
    assert (created["Forenames"], created["Surname"], created["MainCompanyID"]) == ("Ada", "Lovelace", "1")
    assert created["CreatedByID"] == "900001"
    assert outcome.summary == f"Created accessplanit user {created['ID']} (ada@example.com) in account 1"
    assert outcome.response is not None and outcome.response["ID"] == created["ID"]


async def test_an_existing_user_is_found_by_email_in_any_case_and_only_changed_fields_are_sent(
    target: AccessplanitTarget, tenant: InstanceConfig, admin: httpx.AsyncClient, sim: httpx.AsyncClient
) -> None:
    existing = await create_user(admin, Email="Ada@Example.com", Phone="0123")
    outcome = await target.write(command({**ADA, "Surname": "King", "Phone": "0123"}), tenant)
    assert outcome.ok, outcome.summary
    assert outcome.summary == f"Updated accessplanit user {existing['ID']} (ada@example.com): Surname"
    [after] = await users(admin, "ada@example.com")
    assert (after["ID"], after["Surname"], after["MainCompanyID"]) == (existing["ID"], "King", "2")
    assert after["Email"] == "Ada@Example.com"  # the same address in another case is not rewritten
    audit = (await admin.get("/SystemEventLog", params={"$filter": f"ObjectID eq '{existing['ID']}'"})).json()
    assert [c["Field"] for c in audit["results"][-1]["Changes"]] == ["Surname"]
    assert await requests(sim, "POST", "/api/v2/User") == 1  # only the admin's create


async def test_nothing_is_written_when_nothing_changed(
    target: AccessplanitTarget, tenant: InstanceConfig, admin: httpx.AsyncClient, sim: httpx.AsyncClient
) -> None:
    existing = await create_user(admin)
    outcome = await target.write(command(ADA), tenant)
    assert outcome.ok
    assert outcome.summary == f"accessplanit user {existing['ID']} (ada@example.com) is already up to date"
    assert await requests(sim, "PUT", "/api/v2/User/{user_id}") == 0


async def test_several_users_with_the_address_the_most_recently_updated_is_written_and_the_trace_says_so(
    target: AccessplanitTarget, tenant: InstanceConfig, admin: httpx.AsyncClient
) -> None:
    first = await create_user(admin)
    second = await create_user(admin, Forenames="Augusta")
    (await admin.put(f"/User/{first['ID']}", json={"JobTitle": "Analyst"})).raise_for_status()
    outcome = await target.write(command({**ADA, "Surname": "King"}), tenant)
    assert outcome.ok
    assert f"Updated accessplanit user {first['ID']}" in outcome.summary
    assert f"2 active users have this address ({first['ID']}, {second['ID']})" in outcome.summary
    by_id = {u["ID"]: u for u in await users(admin, "ada@example.com")}
    assert (by_id[first["ID"]]["Surname"], by_id[second["ID"]]["Surname"]) == ("King", "Lovelace")


async def test_a_contact_without_a_surname_is_not_created_and_the_reason_names_the_field(
    target: AccessplanitTarget, tenant: InstanceConfig, admin: httpx.AsyncClient
) -> None:
    outcome = await target.write(command({"Email": "nameless@example.com", "Forenames": "Ada"}), tenant)
    assert not outcome.ok
    assert outcome.error is not None and outcome.error.permanent
    assert outcome.error.field == "Surname"
    assert "Surname is mandatory in accessplanit" in outcome.error.message
    assert await users(admin, "nameless@example.com") == []


async def test_a_validation_error_is_permanent_with_accessplanits_field_and_message(
    target: AccessplanitTarget, tenant: InstanceConfig
) -> None:
    outcome = await target.write(command({**ADA, "Surname": "L" * 45}), tenant)
    assert outcome.error is not None
    assert outcome.error.permanent
    assert outcome.error.field == "Surname"
    assert outcome.error.message == (
        "accessplanit answered 400 to create a user: Surname: 'Surname' must be at most 40 characters (got 45)."
    )


async def test_custom_fields_refused_by_the_platform_fail_permanently_naming_the_field(
    target: AccessplanitTarget, tenant: InstanceConfig, admin: httpx.AsyncClient
) -> None:
    await create_user(admin)
    outcome = await target.write(command({**ADA, "CustomFields": {"Region": "North"}}), tenant)
    assert outcome.error is not None and outcome.error.permanent
    assert outcome.error.field == "CustomFields/Region"
    assert "read-only" in outcome.error.message


@pytest.mark.parametrize("status", [503, 500, 502])
async def test_server_errors_are_transient(
    target: AccessplanitTarget, tenant: InstanceConfig, sim: httpx.AsyncClient, status: int
) -> None:
    await control(sim, **{"faults": [{"status": status, "count": 1}]})
    outcome = await target.write(command(ADA), tenant)
    assert not outcome.ok
    assert outcome.error is not None and not outcome.error.permanent
    assert f"answered {status}" in outcome.error.message
    assert (await target.write(command(ADA), tenant)).ok


async def test_a_429_is_transient_and_holds_back_every_request_on_that_key(
    target: AccessplanitTarget, redis: Redis, tenant: InstanceConfig, sim: httpx.AsyncClient
) -> None:
    # As a real over-limit answer does, the injected 429 says when to come back (Retry-After): here, a minute.
    await control(sim, **{"faults": [{"status": 429, "count": 1, "retry_after": 60}]})
    outcome = await target.write(command(ADA), tenant)
    assert outcome.error is not None
    assert (outcome.error.error_class, outcome.error.permanent) == ("RateLimited", False)

    other_replica = AccessplanitTarget(AccessplanitClients(redis, settings()))
    held = await other_replica.write(command(ADA), tenant)
    await other_replica.close()
    assert held.error is not None
    assert (held.error.error_class, held.error.permanent) == ("RateBudgetExhausted", False)
    assert await requests(sim, "GET", "/api/v2/User") == 1  # only the lookup that got the 429


async def test_a_hung_request_times_out_as_transient(
    target: AccessplanitTarget, tenant: InstanceConfig, sim: httpx.AsyncClient
) -> None:
    await control(sim, **{"faults": [{"kind": "timeout"}]})
    try:
        outcome = await target.write(command(ADA), tenant)
    finally:
        await control(sim, **{"faults": []})
    assert outcome.error is not None
    assert (outcome.error.error_class, outcome.error.permanent) == ("Timeout", False)


async def test_a_refused_key_is_permanent(
    target: AccessplanitTarget, tenant: InstanceConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TANDEM_TEST_ACCESSPLANIT_KEY", "not-a-key")
    outcome = await target.write(command(ADA), tenant)
    assert outcome.error is not None
    assert (outcome.error.error_class, outcome.error.permanent) == ("Unauthorized", True)


async def test_a_missing_key_is_permanent(
    target: AccessplanitTarget, tenant: InstanceConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TANDEM_TEST_ACCESSPLANIT_KEY")
    outcome = await target.write(command(ADA), tenant)
    assert outcome.error is not None
    assert (outcome.error.error_class, outcome.error.permanent) == ("SecretUnavailable", True)


async def test_a_deleted_user_with_the_address_is_left_for_a_person(
    target: AccessplanitTarget, tenant: InstanceConfig, admin: httpx.AsyncClient
) -> None:
    deleted = await create_user(admin)
    (await admin.delete(f"/User/{deleted['ID']}")).raise_for_status()
    outcome = await target.write(command(ADA), tenant)
    assert outcome.error is not None and outcome.error.permanent
    assert outcome.error.error_class == "UserDeleted"
    assert [u["ID"] for u in await users(admin, "ada@example.com")] == [deleted["ID"]]


async def test_an_email_change_moves_the_address_of_the_user_found_by_the_old_one(
    target: AccessplanitTarget, tenant: InstanceConfig, admin: httpx.AsyncClient
) -> None:
    existing = await create_user(admin)
    change = command(
        {"Email": "ada.king@example.com"},
        operation=Operation.CHANGE_EMAIL,
        email="ada.king@example.com",
        old_email="ada@example.com",
    )
    outcome = await target.write(change, tenant)
    assert outcome.ok, outcome.summary
    assert outcome.summary == (
        f"Updated accessplanit user {existing['ID']} (ada.king@example.com): Email (was ada@example.com)"
    )
    assert await users(admin, "ada@example.com") == []
    [moved] = await users(admin, "ada.king@example.com")
    assert moved["ID"] == existing["ID"]

    again = await target.write(change, tenant)  # redelivered after a crash: already applied
    assert again.ok
    assert "is already up to date" in again.summary
    assert len(await users(admin)) == 1


async def test_a_retried_create_after_a_crash_between_create_and_ack_does_not_duplicate(
    redis: Redis, tenant: InstanceConfig, admin: httpx.AsyncClient
) -> None:
    class AnswerLost(httpx.AsyncBaseTransport):
        """accessplanit creates the user, then the connection drops before Tandem reads the answer."""

        def __init__(self) -> None:
            self._inner = httpx.AsyncHTTPTransport()

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            response = await self._inner.handle_async_request(request)
            if request.method == "POST":
                await response.aread()
                await response.aclose()
                raise httpx.ReadError("connection reset", request=request)
            return response

    crashing = AccessplanitTarget(AccessplanitClients(redis, settings(), transport=AnswerLost()))
    first = await crashing.write(command(ADA), tenant)
    await crashing.close()
    assert first.error is not None and not first.error.permanent  # retried by the delivery layer
    assert len(await users(admin, "ada@example.com")) == 1

    restarted = AccessplanitTarget(AccessplanitClients(redis, settings()))
    retry = await restarted.write(command(ADA), tenant)
    await restarted.close()
    assert retry.ok
    assert "already up to date" in retry.summary
    assert len(await users(admin, "ada@example.com")) == 1


async def test_an_exhausted_budget_hands_the_write_back_as_transient_without_calling_accessplanit(
    redis: Redis, tenant: InstanceConfig, sim: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    tight = AccessplanitTarget(
        AccessplanitClients(redis, settings(requests_per_window=1, window_s=60, budget_max_wait_s=0.2))
    )
    outcome = await tight.write(command(ADA), tenant)  # the lookup takes the only slot; the create has to wait
    await tight.close()
    assert outcome.error is not None
    assert (outcome.error.error_class, outcome.error.permanent) == ("RateBudgetExhausted", False)
    assert await requests(sim, "POST", "/api/v2/User") == 0
    assert await users(admin) == []


async def test_within_the_budget_writes_wait_instead_of_hitting_accessplanits_rate_limit(
    redis: Redis, tenant: InstanceConfig, sim: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    await control(sim, **{"rate_limit_per_window": 4, "rate_limit_window_seconds": 1})
    budgeted = AccessplanitTarget(
        AccessplanitClients(redis, settings(requests_per_window=3, window_s=1, budget_max_wait_s=3))
    )
    outcomes = [await budgeted.write(command({**ADA, "Email": f"p{n}@example.com"}), tenant) for n in range(4)]
    await budgeted.close()
    assert all(o.ok for o in outcomes), [o.summary for o in outcomes]
    assert len(await users(admin)) == 4
    assert await requests(sim, "GET", "/api/v2/User", 429) + await requests(sim, "POST", "/api/v2/User", 429) == 0


async def test_an_email_change_for_a_contact_accessplanit_never_had_creates_it_with_the_new_address(
    target: AccessplanitTarget, tenant: InstanceConfig, admin: httpx.AsyncClient
) -> None:
    change = command(
        {"Email": "new@example.com", "Forenames": "Ada", "Surname": "Lovelace"},
        operation=Operation.CHANGE_EMAIL,
        email="new@example.com",
        old_email="old@example.com",
    )
    outcome = await target.write(change, tenant)
    assert outcome.ok, outcome.summary
    assert outcome.summary.endswith("; no user had the old address old@example.com, nor the new one")
    assert [u["Email"] for u in await users(admin)] == ["new@example.com"]


async def test_a_change_at_an_address_the_user_has_moved_from_is_written_to_that_user_at_its_new_one(
    target: AccessplanitTarget, tenant: InstanceConfig, admin: httpx.AsyncClient, sim: httpx.AsyncClient
) -> None:
    """A Mailchimp edit made at the old address while accessplanit's email change was on its way (issue 15): no
    user has the address any more, but Tandem saw user N there; the edit is that user's, its new address kept."""
    moved = await create_user(admin, Email="ada.king@example.com")
    late = command({"Email": "ada@example.com", "Surname": "Byron"}).model_copy(update={"target_user_id": moved["ID"]})

    outcome = await target.write(late, tenant)

    assert outcome.ok, outcome.summary
    assert outcome.summary == (
        f"Updated accessplanit user {moved['ID']} (ada.king@example.com): Surname; no user has ada@example.com any "
        f"more: accessplanit moved user {moved['ID']} to ada.king@example.com meanwhile"
    )
    [after] = await users(admin)
    assert (after["ID"], after["Email"], after["Surname"]) == (moved["ID"], "ada.king@example.com", "Byron")
    # Recorded where the user is: the sync state follows the user, not the address the change named.
    assert outcome.written is not None and outcome.written.payload["Email"] == "ada.king@example.com"
    assert await requests(sim, "POST", "/api/v2/User") == 1  # only the admin's create


async def test_a_deleted_user_last_seen_at_the_address_is_not_written_to(
    target: AccessplanitTarget, tenant: InstanceConfig, admin: httpx.AsyncClient
) -> None:
    gone = await create_user(admin, Email="ada.king@example.com")
    (await admin.delete(f"/User/{gone['ID']}")).raise_for_status()
    late = command({**ADA, "Surname": "Byron"}).model_copy(update={"target_user_id": gone["ID"]})

    outcome = await target.write(late, tenant)

    assert outcome.ok, outcome.summary
    assert outcome.summary.startswith("Created accessplanit user")  # as without the hint: the address is free


async def test_an_address_change_from_an_address_the_user_has_moved_from_since_is_not_written(
    target: AccessplanitTarget, tenant: InstanceConfig, admin: httpx.AsyncClient, sim: httpx.AsyncClient
) -> None:
    """Both sides changed the address at once (issue 15): Mailchimp's change from ada@… reaches accessplanit after
    accessplanit's own change of ada@… to ada.king@…, received after it, which wins: no user is created."""
    moved = await create_user(admin, Email="ada.king@example.com")
    change = command(
        {"Email": "ada.mc@example.com"},
        operation=Operation.CHANGE_EMAIL,
        email="ada.mc@example.com",
        old_email="ada@example.com",
    ).model_copy(update={"target_user_id": moved["ID"]})

    outcome = await target.write(change, tenant)

    assert outcome.ok and not outcome.wrote, outcome.summary
    assert outcome.summary == (
        f"Not written to accessplanit: no user has ada@example.com any more: accessplanit moved user {moved['ID']} to "
        "ada.king@example.com meanwhile, an address change received after this one, which wins"
    )
    assert [u["Email"] for u in await users(admin)] == ["ada.king@example.com"]
    assert await requests(sim, "POST", "/api/v2/User") == 1  # only the admin's create


class LeavesOut:
    """An `UnseenEdits` that leaves out the named fields of every command (or everything), recording the user."""

    def __init__(self, *names: str, everything: bool = False) -> None:
        self.names = names
        self.everything = everything
        self.seen: list[Mapping[str, Any]] = []

    async def check(self, command: SyncCommand, instance: InstanceConfig, user: Mapping[str, Any]) -> CheckResult:
        self.seen.append(user)
        if self.everything:
            return CheckResult(None, logs=["an edit not read yet"])
        payload = {k: v for k, v in command.payload.items() if k not in self.names}
        return CheckResult(command.model_copy(update={"payload": payload}), logs=["Forenames left out"])


async def test_fields_the_pre_write_check_leaves_out_are_not_sent_nor_recorded_as_written(
    redis: Redis, tenant: InstanceConfig, admin: httpx.AsyncClient
) -> None:
    existing = await create_user(admin, Forenames="Hedy")
    unseen = LeavesOut("Forenames")
    target = AccessplanitTarget(AccessplanitClients(redis, settings()), unseen)
    try:
        outcome = await target.write(command({**ADA, "Forenames": "Grace", "Surname": "Hopper"}), tenant)
        assert outcome.ok and outcome.wrote, outcome.summary
        assert outcome.summary == (
            f"Updated accessplanit user {existing['ID']} (ada@example.com): Surname; Forenames left out"
        )
        assert outcome.written is not None and "Forenames" not in outcome.written.payload
        assert unseen.seen[0]["ID"] == existing["ID"]  # judged on the lookup the write made anyway
        [after] = await users(admin, "ada@example.com")
        assert (after["Forenames"], after["Surname"]) == ("Hedy", "Hopper")

        nothing = AccessplanitTarget(AccessplanitClients(redis, settings()), LeavesOut(everything=True))
        skipped = await nothing.write(command({**ADA, "Forenames": "Grace"}), tenant)
        await nothing.close()
        assert skipped.ok and not skipped.wrote
        assert skipped.summary == "Not written to accessplanit: an edit not read yet"
        [still] = await users(admin, "ada@example.com")
        assert still["Forenames"] == "Hedy"
    finally:
        await target.close()


async def test_a_change_following_a_moved_user_records_only_what_the_check_let_through(
    redis: Redis, tenant: InstanceConfig, admin: httpx.AsyncClient
) -> None:
    """Both at once: the user moved from the change's address, and an edit of it not read yet. What is recorded as
    written is what was written, at the user's new address; nothing is recorded when nothing was written."""
    moved = await create_user(admin, Email="ada.king@example.com", Forenames="Hedy")
    late = command({**ADA, "Forenames": "Grace", "Surname": "Byron"}).model_copy(update={"target_user_id": moved["ID"]})
    target = AccessplanitTarget(AccessplanitClients(redis, settings()), LeavesOut("Forenames"))
    nothing = AccessplanitTarget(AccessplanitClients(redis, settings()), LeavesOut(everything=True))
    try:
        outcome = await target.write(late, tenant)
        assert outcome.ok and outcome.wrote, outcome.summary
        assert outcome.written is not None
        assert outcome.written.payload["Email"] == "ada.king@example.com"
        assert "Forenames" not in outcome.written.payload
        [after] = await users(admin)
        assert (after["Email"], after["Forenames"], after["Surname"]) == ("ada.king@example.com", "Hedy", "Byron")

        skipped = await nothing.write(late, tenant)
        assert skipped.ok and not skipped.wrote and skipped.written is None, skipped.summary
    finally:
        await target.close()
        await nothing.close()
