"""The Mailchimp target against the simulator: upserts, email changes, consent, and every fault classified."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from component.mailchimp.writer_kit import WRONG_KEY_VAR, make_instance
from component.simulators.mailchimp.mailchimp_testkit import DEMO_KEY, DEMO_LIST, SimServer

from support.commands import sync_command
from tandem_devstack.processes import free_port
from tandem_shared.concurrency import LocalConcurrencyLimiter
from tandem_shared.contracts import (
    InstanceConfig,
    Operation,
    SyncCommand,
    System,
    subscriber_hash,
)
from tandem_shared.vendors.mailchimp.client import MailchimpClients, limiter_name
from tandem_writer.domain.outcome import WriteOutcome
from tandem_writer.targets.mailchimp import MailchimpTarget

pytestmark = pytest.mark.usefixtures("mailchimp_keys")


@pytest.fixture
async def target(limiter: LocalConcurrencyLimiter) -> AsyncIterator[MailchimpTarget]:
    target = MailchimpTarget(MailchimpClients(limiter=limiter, timeout_s=5, server_timeout_s=60))
    yield target
    await target.close()


def command(
    email: str,
    merge_fields: dict[str, Any] | None = None,
    *,
    operation: Operation = Operation.UPSERT,
    old_email: str | None = None,
    **payload: Any,
) -> SyncCommand:
    body = {"email_address": email, "status_if_new": "subscribed", "merge_fields": merge_fields or {}, **payload}
    return sync_command(
        "writer-test",
        System.MAILCHIMP,
        body,
        email=email,
        user_id="1",
        old_email=old_email,
        operation=operation,
        execution_id="e",
        event_id="ev",
        key="k",
    )


async def member(api: httpx.AsyncClient, email: str) -> dict[str, Any] | None:
    response = await api.get(f"/lists/{DEMO_LIST}/members/{subscriber_hash(email)}")
    return response.json() if response.status_code == 200 else None


async def control(sim: httpx.AsyncClient, **body: Any) -> None:
    (await sim.post("/_sim/controls", json=body)).raise_for_status()


async def requests_by_route(sim: httpx.AsyncClient) -> dict[str, dict[str, int]]:
    routes: dict[str, dict[str, int]] = (await sim.get("/_sim/stats")).json()["requests"]
    return routes


def ok(outcome: WriteOutcome) -> WriteOutcome:
    assert outcome.ok, outcome
    assert outcome.error is None
    return outcome


async def test_a_new_contact_is_created_with_its_merge_fields(
    mc_sim: httpx.AsyncClient, api: httpx.AsyncClient, target: MailchimpTarget, instance: InstanceConfig
) -> None:
    outcome = ok(await target.write(command("Ada@Example.com", {"FNAME": "Ada", "LNAME": "Lovelace"}), instance))
    assert outcome.response is not None
    assert outcome.response["status"] == "subscribed"
    assert outcome.response["id"] == subscriber_hash("ada@example.com")
    found = await member(api, "ada@example.com")
    assert found is not None
    assert found["merge_fields"]["FNAME"] == "Ada"
    assert found["status"] == "subscribed"


async def test_an_upsert_never_changes_an_existing_members_status(
    mc_sim: httpx.AsyncClient, api: httpx.AsyncClient, target: MailchimpTarget, instance: InstanceConfig
) -> None:
    ok(await target.write(command("u@example.com", {"FNAME": "U"}), instance))
    (await mc_sim.post(f"/_sim/admin/lists/{DEMO_LIST}/members/u@example.com/unsubscribe", json={})).raise_for_status()
    outcome = ok(await target.write(command("u@example.com", {"FNAME": "Changed"}, status="subscribed"), instance))
    assert outcome.response is not None and outcome.response["status"] == "unsubscribed"
    found = await member(api, "u@example.com")
    assert found is not None
    assert (found["status"], found["merge_fields"]["FNAME"]) == ("unsubscribed", "Changed")


async def test_an_edit_of_an_api_unsubscribed_contact_leaves_it_unsubscribed(
    mc_sim: httpx.AsyncClient, api: httpx.AsyncClient, target: MailchimpTarget, instance: InstanceConfig
) -> None:
    # Mailchimp would let an API call resubscribe this member (mailchimp-api.md §10); Tandem never asks it to: it
    # sends `status_if_new` only, whatever the command's payload says.
    ok(await target.write(command("api-unsub@example.com", {"FNAME": "A"}), instance))
    path = f"/lists/{DEMO_LIST}/members/{subscriber_hash('api-unsub@example.com')}"
    assert (await api.patch(path, json={"status": "unsubscribed"})).json()["status"] == "unsubscribed"
    for payload in ({}, {"status": "subscribed"}):
        edit = command("api-unsub@example.com", {"FNAME": "Edited"}, **payload)
        outcome = ok(await target.write(edit, instance))
        assert outcome.response is not None and outcome.response["status"] == "unsubscribed"
    found = await member(api, "api-unsub@example.com")
    assert found is not None
    assert (found["status"], found["merge_fields"]["FNAME"]) == ("unsubscribed", "Edited")
    # The API itself would have resubscribed it: the consent rule is Tandem's, not the simulator's.
    resubscribed = await api.patch(path, json={"status": "subscribed"})
    assert resubscribed.json()["status"] == "subscribed"


async def test_a_double_opt_in_instance_adds_new_contacts_as_pending(
    mc_sim: httpx.AsyncClient, mc_sim_server: SimServer, target: MailchimpTarget
) -> None:
    instance = make_instance(mc_sim_server.base_url, status_if_new="pending")
    body = command("p@example.com")
    payload = {k: v for k, v in body.payload.items() if k != "status_if_new"}
    outcome = ok(await target.write(body.model_copy(update={"payload": payload}), instance))
    assert outcome.response is not None and outcome.response["status"] == "pending"


async def test_an_email_change_moves_the_member(
    mc_sim: httpx.AsyncClient, api: httpx.AsyncClient, target: MailchimpTarget, instance: InstanceConfig
) -> None:
    ok(await target.write(command("old@example.com", {"FNAME": "Old"}), instance))
    before = await member(api, "old@example.com")
    assert before is not None
    change = command("new@example.com", {"FNAME": "New"}, operation=Operation.CHANGE_EMAIL, old_email="old@example.com")
    outcome = ok(await target.write(change, instance))
    assert "old@example.com is now new@example.com" in outcome.summary
    moved = await member(api, "new@example.com")
    assert moved is not None
    assert moved["contact_id"] == before["contact_id"]
    assert moved["merge_fields"]["FNAME"] == "New"
    assert await member(api, "old@example.com") is None


async def test_an_email_change_without_the_old_member_upserts_the_new_address(
    mc_sim: httpx.AsyncClient, api: httpx.AsyncClient, target: MailchimpTarget, instance: InstanceConfig
) -> None:
    change = command("fresh@example.com", operation=Operation.CHANGE_EMAIL, old_email="never@example.com")
    outcome = ok(await target.write(change, instance))
    assert "never@example.com is not in the audience" in outcome.summary
    assert await member(api, "fresh@example.com") is not None
    # Repeating the same change (a retry after a lost answer) lands on the same member.
    ok(await target.write(change, instance))


async def test_an_email_change_of_a_member_mailchimp_moved_meanwhile_creates_no_second_member(
    mc_sim: httpx.AsyncClient, api: httpx.AsyncClient, target: MailchimpTarget, instance: InstanceConfig
) -> None:
    """Both sides changed the address at once, accessplanit's change received first (docs/convergence.md,
    "Moves"): the member Tandem knew at the old address is at Mailchimp's own new one."""
    ok(await target.write(command("old@example.com", {"FNAME": "Old"}), instance))
    moved_by_mailchimp = await api.patch(
        f"/lists/{DEMO_LIST}/members/{subscriber_hash('old@example.com')}", json={"email_address": "mc@example.com"}
    )
    moved_by_mailchimp.raise_for_status()
    change = command(
        "ap@example.com", {"FNAME": "Old"}, operation=Operation.CHANGE_EMAIL, old_email="old@example.com"
    ).model_copy(update={"known_at_old": True})

    outcome = await target.write(change, instance)

    assert outcome.ok and not outcome.wrote, outcome.summary
    assert outcome.summary.startswith(
        "Not written to Mailchimp: no member at old@example.com, where Tandem had it, nor at ap@example.com"
    )
    assert await member(api, "ap@example.com") is None
    assert await member(api, "mc@example.com") is not None


async def test_a_retried_email_change_whose_move_landed_is_written_to_the_new_address(
    mc_sim: httpx.AsyncClient, api: httpx.AsyncClient, target: MailchimpTarget, instance: InstanceConfig
) -> None:
    ok(await target.write(command("old@example.com", {"FNAME": "Old"}), instance))
    change = command(
        "new@example.com", {"FNAME": "New"}, operation=Operation.CHANGE_EMAIL, old_email="old@example.com"
    ).model_copy(update={"known_at_old": True})
    ok(await target.write(change, instance))

    again = ok(await target.write(change, instance))  # its answer lost: the same change again

    assert again.wrote and "old@example.com is not in the audience" in again.summary
    assert await member(api, "new@example.com") is not None


@pytest.mark.parametrize("state", ["unsubscribed", "cleaned", "archived", "pending"])
async def test_an_email_change_of_a_member_who_is_not_subscribed_is_refused_and_creates_nothing(
    mc_sim: httpx.AsyncClient,
    mc_sim_server: SimServer,
    api: httpx.AsyncClient,
    target: MailchimpTarget,
    state: str,
) -> None:
    instance = make_instance(mc_sim_server.base_url, status_if_new="pending" if state == "pending" else "subscribed")
    old, new = f"{state}-was@example.com", f"{state}-now@example.com"
    payload = {} if state != "pending" else {"status_if_new": "pending"}
    ok(await target.write(command(old, {"FNAME": "Old"}, **payload), instance))
    path = f"/lists/{DEMO_LIST}/members/{subscriber_hash(old)}"
    if state == "unsubscribed":
        await api.patch(path, json={"status": "unsubscribed"})
    if state == "cleaned":
        (await mc_sim.post(f"/_sim/admin/lists/{DEMO_LIST}/members/{old}/clean", json={})).raise_for_status()
    if state == "archived":
        assert (await api.delete(path)).status_code == 204
    change = command(new, {"FNAME": "New"}, operation=Operation.CHANGE_EMAIL, old_email=old, **payload)
    for _ in range(2):  # a repeat (the retry tier, a replay) refuses again and still creates nothing
        outcome = await target.write(change, instance)
        assert outcome.error is not None, outcome
        assert (outcome.error.permanent, outcome.error.error_class) == (True, "EmailChangeRefused")
        assert f'status is "{state}."' in outcome.error.message
        assert "does not create a member at the new address" in outcome.error.message
        assert outcome.summary.startswith("Mailchimp refused the write")
    assert await member(api, new) is None
    assert (await requests_by_route(mc_sim)).get("PUT member", {}) == {"200": 1}


async def test_an_email_change_whose_old_member_reads_back_not_subscribed_is_refused_without_any_write(
    limiter: LocalConcurrencyLimiter, instance: InstanceConfig
) -> None:
    # Should a real PATCH of an archived member answer 404 (unconfirmed), the member read back decides.
    seen: list[tuple[str, str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path))
        if request.method == "GET":
            return httpx.Response(200, json={"email_address": "gone@example.com", "status": "archived"})
        body = {"title": "Resource Not Found", "status": 404, "detail": "The requested resource could not be found."}
        return httpx.Response(404, json=body, headers={"content-type": "application/problem+json"})

    clients = MailchimpClients(limiter=limiter, timeout_s=5, transport=httpx.MockTransport(answer))
    target = MailchimpTarget(clients)
    try:
        change = command("fresh@example.com", operation=Operation.CHANGE_EMAIL, old_email="gone@example.com")
        outcome = await target.write(change, instance)
    finally:
        await target.close()
    assert outcome.error is not None
    assert (outcome.error.permanent, outcome.error.error_class) == (True, "EmailChangeRefused")
    assert "the member at gone@example.com is archived" in outcome.error.message
    assert [method for method, _ in seen] == ["PATCH", "GET"], "nothing is written at the new address"


async def test_an_email_change_onto_an_address_already_in_the_audience_is_permanent(
    mc_sim: httpx.AsyncClient, target: MailchimpTarget, instance: InstanceConfig
) -> None:
    ok(await target.write(command("a@example.com"), instance))
    ok(await target.write(command("b@example.com"), instance))
    outcome = await target.write(
        command("b@example.com", operation=Operation.CHANGE_EMAIL, old_email="a@example.com"), instance
    )
    assert outcome.error is not None
    assert outcome.error.permanent
    assert outcome.error.error_class == "InvalidResource"
    assert "already in this list" in outcome.error.message


async def test_a_forgotten_address_is_a_permanent_explained_refusal(
    mc_sim: httpx.AsyncClient, api: httpx.AsyncClient, target: MailchimpTarget, instance: InstanceConfig
) -> None:
    ok(await target.write(command("gone@example.com"), instance))
    path = f"/lists/{DEMO_LIST}/members/{subscriber_hash('gone@example.com')}/actions/delete-permanent"
    assert (await api.post(path)).status_code == 204
    outcome = await target.write(command("gone@example.com"), instance)
    assert outcome.error is not None
    assert outcome.error.permanent
    assert outcome.error.error_class == "ForgottenEmailNotSubscribed"


async def test_invalid_merge_fields_keep_the_field_and_message(
    mc_sim: httpx.AsyncClient, target: MailchimpTarget, instance: InstanceConfig
) -> None:
    outcome = await target.write(command("bday@example.com", {"BIRTHDAY": "13/45"}), instance)
    assert outcome.error is not None
    assert outcome.error.permanent
    assert outcome.error.field == "BIRTHDAY"
    assert "BIRTHDAY" in outcome.error.message


async def test_a_wrong_api_key_is_permanent(
    mc_sim: httpx.AsyncClient, mc_sim_server: SimServer, target: MailchimpTarget
) -> None:
    instance = make_instance(mc_sim_server.base_url, api_key=f"env:{WRONG_KEY_VAR}")
    outcome = await target.write(command("k@example.com"), instance)
    assert outcome.error is not None
    assert (outcome.error.permanent, outcome.error.error_class) == (True, "APIKeyInvalid")


async def test_a_missing_api_key_secret_is_permanent_and_does_not_leak(
    mc_sim: httpx.AsyncClient, mc_sim_server: SimServer, target: MailchimpTarget
) -> None:
    instance = make_instance(mc_sim_server.base_url, api_key="env:TANDEM_TEST_NO_SUCH_VARIABLE")
    outcome = await target.write(command("k@example.com"), instance)
    assert outcome.error is not None
    assert (outcome.error.permanent, outcome.error.error_class) == (True, "SecretUnavailable")


async def test_a_command_without_an_address_is_permanent(
    mc_sim: httpx.AsyncClient, target: MailchimpTarget, instance: InstanceConfig
) -> None:
    broken = command("x@example.com")
    outcome = await target.write(broken.model_copy(update={"payload": {"merge_fields": {}}}), instance)
    assert outcome.error is not None
    assert (outcome.error.permanent, outcome.error.error_class) == (True, "InvalidCommand")


@pytest.mark.parametrize(
    ("fault", "error_class"),
    [
        ("500", "InternalServerError"),
        ("503", "ServiceUnavailable"),
        ("429", "TooManyRequests"),
        ("429_empty", "HTTP429"),
        ("403_empty", "HTTP403"),
        ("502_html", "HTTP502"),
    ],
)
async def test_injected_faults_are_transient_and_the_retry_succeeds(
    mc_sim: httpx.AsyncClient, target: MailchimpTarget, instance: InstanceConfig, fault: str, error_class: str
) -> None:
    await control(mc_sim, route="PUT member", fault=fault, count=1)
    failed = await target.write(command("f@example.com"), instance)
    assert failed.error is not None, failed
    assert failed.error.permanent is False
    assert failed.error.error_class == error_class
    ok(await target.write(command("f@example.com"), instance))


async def test_faults_on_the_email_change_are_transient_too(
    mc_sim: httpx.AsyncClient, target: MailchimpTarget, instance: InstanceConfig
) -> None:
    ok(await target.write(command("o@example.com"), instance))
    await control(mc_sim, route="PATCH member", fault="503", count=1)
    change = command("n@example.com", operation=Operation.CHANGE_EMAIL, old_email="o@example.com")
    failed = await target.write(change, instance)
    assert failed.error is not None and not failed.error.permanent
    ok(await target.write(change, instance))


async def test_a_timeout_is_transient_and_keeps_the_slot_mailchimp_may_still_hold(
    mc_sim: httpx.AsyncClient, instance: InstanceConfig
) -> None:
    limiter = LocalConcurrencyLimiter(limit=10, max_wait_s=10)
    target = MailchimpTarget(MailchimpClients(limiter=limiter, timeout_s=0.3, server_timeout_s=60))
    try:
        await control(mc_sim, route="PUT member", fault="timeout", count=1, hang_ms=1500)
        outcome = await target.write(command("t@example.com"), instance)
        assert outcome.error is not None
        assert (outcome.error.permanent, outcome.error.error_class) == (False, "Timeout")
        name = limiter_name(instance.mailchimp.api_root(DEMO_KEY), DEMO_KEY)
        assert limiter.in_use(name) == 1
        ok(await target.write(command("t2@example.com"), instance))
        assert limiter.in_use(name) == 1
    finally:
        await target.close()


async def test_an_unreachable_server_is_transient(target: MailchimpTarget) -> None:
    instance = make_instance(f"http://127.0.0.1:{free_port()}")
    outcome = await target.write(command("x@example.com"), instance)
    assert outcome.error is not None
    assert (outcome.error.permanent, outcome.error.error_class) == (False, "ConnectError")
