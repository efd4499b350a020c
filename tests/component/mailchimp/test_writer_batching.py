"""Group commit in the Mailchimp target against the simulator: upserts queued behind a busy connection go out as one
batch subscribe, each command keeps its own outcome, and every failure means what it means for a PUT."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from component.mailchimp.test_writer_target import command, control, member, ok
from component.mailchimp.writer_kit import make_instance
from component.simulators.mailchimp.mailchimp_testkit import DEMO_KEY, DEMO_LIST, SimServer

from support.waiting import eventually
from tandem_shared.concurrency import LocalConcurrencyLimiter
from tandem_shared.contracts import InstanceConfig, Operation, subscriber_hash
from tandem_shared.vendors.mailchimp.client import MailchimpClients, limiter_name
from tandem_writer.domain.outcome import WriteOutcome
from tandem_writer.targets.mailchimp import MailchimpTarget

BATCH = "POST batch subscribe"
PUT = "PUT member"


pytestmark = pytest.mark.usefixtures("mailchimp_keys")


def batching_target(limiter: LocalConcurrencyLimiter, *, connections: int = 1, batch_max: int = 50) -> MailchimpTarget:
    # One connection: while one request is out, everything else queues, as under a backlog.
    clients = MailchimpClients(limiter=limiter, timeout_s=5, server_timeout_s=60, max_connections=connections)
    return MailchimpTarget(clients, batch_max=batch_max)


@pytest.fixture
async def target(limiter: LocalConcurrencyLimiter) -> AsyncIterator[MailchimpTarget]:
    target = batching_target(limiter)
    yield target
    await target.close()


async def requests(sim: httpx.AsyncClient) -> dict[str, dict[str, int]]:
    stats = (await sim.get("/_sim/stats")).json()
    return {route: counts for route, counts in stats["requests"].items() if not route.startswith("GET")}


async def write_all(target: MailchimpTarget, instance: InstanceConfig, commands: list[Any]) -> list[WriteOutcome]:
    return list(await asyncio.gather(*(target.write(c, instance) for c in commands)))


def emails(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}@example.com" for i in range(n)]


async def test_upserts_queued_behind_a_slow_mailchimp_go_out_in_fewer_requests_each_with_its_own_outcome(
    mc_sim: httpx.AsyncClient,
    api: httpx.AsyncClient,
    limiter: LocalConcurrencyLimiter,
    instance: InstanceConfig,
) -> None:
    await control(mc_sim, route="*", latency_ms=200)
    target = batching_target(limiter, connections=2, batch_max=8)
    try:
        addresses = emails("Batch", 30)
        outcomes = await write_all(
            target, instance, [command(e, {"FNAME": f"F{i}", "LNAME": e}) for i, e in enumerate(addresses)]
        )
    finally:
        await target.close()
    for address, outcome in zip(addresses, outcomes, strict=True):
        ok(outcome)
        assert outcome.response is not None
        assert outcome.response["id"] == subscriber_hash(address)
        assert outcome.response["email_address"] == address
        assert outcome.response["merge_fields"]["LNAME"] == address
        assert outcome.summary == f"Mailchimp member {address} is subscribed"
    seen = await requests(mc_sim)
    sent = sum(sum(counts.values()) for counts in seen.values())
    assert sent < len(addresses)
    assert seen[BATCH]["200"] >= 30 // 8
    assert (await mc_sim.get("/_sim/stats")).json()["accounts"]["tandemdemo"]["peak_in_flight"] == 2
    for i, address in enumerate(addresses):
        found = await member(api, address)
        assert found is not None
        assert (found["status"], found["merge_fields"]["FNAME"]) == ("subscribed", f"F{i}")


async def test_a_backlog_is_spread_over_every_connection_mailchimp_allows(
    mc_sim: httpx.AsyncClient, limiter: LocalConcurrencyLimiter, instance: InstanceConfig
) -> None:
    await control(mc_sim, route="*", latency_ms=200)
    target = batching_target(limiter, connections=10, batch_max=200)
    try:
        addresses = emails("Spread", 100)
        for outcome in await write_all(target, instance, [command(e, {"FNAME": "S"}) for e in addresses]):
            ok(outcome)
    finally:
        await target.close()
    stats = (await mc_sim.get("/_sim/stats")).json()
    # Ten batches of ten side by side, not one batch of a hundred on one connection while nine stay idle.
    assert stats["requests"][BATCH] == {"200": 10}
    assert stats["members_written"] == {BATCH: 100}
    assert stats["accounts"]["tandemdemo"]["peak_in_flight"] == 10


async def test_one_upsert_alone_is_still_a_put(
    mc_sim: httpx.AsyncClient, api: httpx.AsyncClient, target: MailchimpTarget, instance: InstanceConfig
) -> None:
    outcome = ok(await target.write(command("alone@example.com", {"FNAME": "Alone"}), instance))
    assert outcome.response is not None and outcome.response["status"] == "subscribed"
    assert await requests(mc_sim) == {PUT: {"200": 1}}


async def test_a_member_refused_inside_a_batch_is_classified_as_its_put_would_be_and_the_others_succeed(
    mc_sim: httpx.AsyncClient,
    limiter: LocalConcurrencyLimiter,
    target: MailchimpTarget,
    instance: InstanceConfig,
) -> None:
    # What the PUT says about this body on its own (a fresh target without batching).
    alone = MailchimpTarget(MailchimpClients(limiter=limiter, timeout_s=5))
    try:
        reference = await alone.write(command("bday0@example.com", {"BIRTHDAY": "13/45"}), instance)
    finally:
        await alone.close()
    assert reference.error is not None and reference.error.permanent
    await mc_sim.post("/_sim/reset")

    good = emails("good", 6)
    batch = [command(e, {"FNAME": "Good"}) for e in good[:3]]
    batch += [command("bday1@example.com", {"BIRTHDAY": "13/45"})]
    batch += [command(e, {"FNAME": "Good"}) for e in good[3:]]
    outcomes = await write_all(target, instance, batch)

    refused = outcomes[3]
    assert not refused.ok
    assert refused.error == reference.error
    assert refused.summary == reference.summary
    assert [o.ok for o in outcomes] == [True, True, True, False, True, True, True]
    seen = await requests(mc_sim)
    assert seen[BATCH] == {"200": 1}
    # The refused member was written once more on its own: its error comes from its own PUT.
    assert seen[PUT] == {"400": 1}


async def test_a_batch_that_refuses_a_member_answers_the_others_from_the_batch_only(
    mc_sim: httpx.AsyncClient, target: MailchimpTarget, instance: InstanceConfig
) -> None:
    outcomes = await write_all(target, instance, [command("bad@", {})] + [command(e) for e in emails("fine", 3)])
    assert outcomes[0].error is not None and outcomes[0].error.permanent
    assert all(o.ok for o in outcomes[1:])
    seen = await requests(mc_sim)
    assert sum(seen[PUT].values()) == 1


async def test_a_batch_refused_as_a_whole_for_one_item_drops_exactly_that_item_and_resends_the_rest_once(
    mc_sim: httpx.AsyncClient, api: httpx.AsyncClient, target: MailchimpTarget, instance: InstanceConfig
) -> None:
    # A schema-invalid item fails the whole call with 400 and `members.item:N.<field>` (mailchimp-api.md §10).
    good = emails("kept", 4)
    batch = [command(e, {"FNAME": "Kept"}) for e in good[:2]]
    batch += [command("pdf@example.com", {"FNAME": "Pdf"}, email_type="pdf")]
    batch += [command(e, {"FNAME": "Kept"}) for e in good[2:]]
    outcomes = await write_all(target, instance, batch)

    dropped = outcomes[2]
    assert dropped.error is not None, dropped
    assert (dropped.error.permanent, dropped.error.error_class, dropped.error.field) == (
        True,
        "InvalidResource",
        "email_type",
    )
    assert "Data presented is not one of the accepted values" in dropped.error.message
    assert dropped.summary.startswith("Mailchimp refused the write")
    assert [o.ok for o in outcomes] == [True, True, False, True, True]
    for address in good:
        found = await member(api, address)
        assert found is not None and found["merge_fields"]["FNAME"] == "Kept"
    assert await member(api, "pdf@example.com") is None
    # The refused call, then the rest once, together; no PUT of anyone.
    assert await requests(mc_sim) == {BATCH: {"200": 1, "400": 1}}


@pytest.mark.parametrize(
    ("fault", "error_class"),
    [
        ("500", "InternalServerError"),
        ("503", "ServiceUnavailable"),
        ("429", "TooManyRequests"),
        ("502_html", "HTTP502"),
    ],
)
async def test_a_batch_failing_as_a_whole_gives_every_command_the_transient_outcome_of_a_put(
    mc_sim: httpx.AsyncClient,
    api: httpx.AsyncClient,
    target: MailchimpTarget,
    instance: InstanceConfig,
    fault: str,
    error_class: str,
) -> None:
    await control(mc_sim, route=BATCH, fault=fault, count=1)
    addresses = emails(f"whole{fault}-", 5)
    failed = await write_all(target, instance, [command(e) for e in addresses])
    for outcome in failed:
        assert outcome.error is not None, outcome
        assert (outcome.error.permanent, outcome.error.error_class) == (False, error_class)
        assert outcome.summary.startswith("Mailchimp refused the write")
    assert (await requests(mc_sim))[BATCH] == {fault.split("_")[0]: 1}
    # Retried (as the retry tier would), each is written: nothing is lost.
    again = await write_all(target, instance, [command(e) for e in addresses])
    assert all(o.ok for o in again)
    for address in addresses:
        assert await member(api, address) is not None


async def test_a_batch_timing_out_is_transient_for_each_command_and_keeps_the_slot(
    mc_sim: httpx.AsyncClient, instance: InstanceConfig
) -> None:
    limiter = LocalConcurrencyLimiter(limit=10, max_wait_s=10)
    target = MailchimpTarget(
        MailchimpClients(limiter=limiter, timeout_s=0.3, server_timeout_s=60, max_connections=1), batch_max=10
    )
    try:
        await control(mc_sim, route=BATCH, fault="timeout", count=1, hang_ms=1500)
        outcomes = await write_all(target, instance, [command(e) for e in emails("slow", 4)])
        for outcome in outcomes:
            assert outcome.error is not None
            assert (outcome.error.permanent, outcome.error.error_class) == (False, "Timeout")
        name = limiter_name(instance.mailchimp.api_root(DEMO_KEY), DEMO_KEY)
        assert limiter.in_use(name) == 1
        # The simulator answers the abandoned request only when its hang ends: wait for that answer here, or it
        # lands in the next test's request counts.
        await eventually(lambda: hung_request_answered(mc_sim))
    finally:
        await target.close()


async def hung_request_answered(sim: httpx.AsyncClient) -> bool:
    return "504" in (await requests(sim)).get(BATCH, {})


async def test_a_batch_upsert_never_changes_an_existing_members_status(
    mc_sim: httpx.AsyncClient, api: httpx.AsyncClient, target: MailchimpTarget, instance: InstanceConfig
) -> None:
    ok(await target.write(command("keep@example.com", {"FNAME": "Keep"}), instance))
    (
        await mc_sim.post(f"/_sim/admin/lists/{DEMO_LIST}/members/keep@example.com/unsubscribe", json={})
    ).raise_for_status()
    outcomes = await write_all(
        target,
        instance,
        [
            command("first@example.com"),
            command("keep@example.com", {"FNAME": "Changed"}, status="subscribed"),
            command("other@example.com"),
        ],
    )
    assert all(o.ok for o in outcomes)
    assert (await requests(mc_sim))[BATCH] == {"200": 1}
    assert outcomes[1].response is not None and outcomes[1].response["status"] == "unsubscribed"
    found = await member(api, "keep@example.com")
    assert found is not None
    assert (found["status"], found["merge_fields"]["FNAME"]) == ("unsubscribed", "Changed")


async def test_new_members_of_a_batch_get_the_instances_status_if_new(
    mc_sim: httpx.AsyncClient, mc_sim_server: SimServer, target: MailchimpTarget
) -> None:
    instance = make_instance(mc_sim_server.base_url, status_if_new="pending")

    def without_status(email: str) -> Any:
        body = command(email)
        return body.model_copy(update={"payload": {k: v for k, v in body.payload.items() if k != "status_if_new"}})

    outcomes = await write_all(target, instance, [without_status(e) for e in emails("optin", 4)])
    assert [o.response["status"] if o.response else None for o in outcomes] == ["pending"] * 4
    assert (await requests(mc_sim))[BATCH] == {"200": 1}


async def test_two_upserts_of_one_address_never_share_a_batch(
    mc_sim: httpx.AsyncClient, api: httpx.AsyncClient, target: MailchimpTarget, instance: InstanceConfig
) -> None:
    outcomes = await write_all(
        target,
        instance,
        [
            command("lead@example.com"),
            command("twin@example.com", {"FNAME": "One"}),
            command("Twin@Example.com", {"FNAME": "Two"}),
            command("third@example.com"),
        ],
    )
    assert all(o.ok for o in outcomes)
    seen = await requests(mc_sim)
    assert seen[BATCH] == {"200": 1}
    assert seen[PUT] == {"200": 1}  # the second upsert of the address, after the batch
    found = await member(api, "twin@example.com")
    assert found is not None and found["merge_fields"]["FNAME"] == "Two"


async def test_email_changes_and_bodies_the_batch_does_not_take_keep_their_own_request(
    mc_sim: httpx.AsyncClient, api: httpx.AsyncClient, target: MailchimpTarget, instance: InstanceConfig
) -> None:
    ok(await target.write(command("before@example.com"), instance))
    outcomes = await write_all(
        target,
        instance,
        [
            command("x1@example.com"),
            command("after@example.com", operation=Operation.CHANGE_EMAIL, old_email="before@example.com"),
            command("tagged@example.com", tags=["vip"]),
            command("x2@example.com"),
            command("x3@example.com"),
        ],
    )
    assert all(o.ok for o in outcomes), outcomes
    seen = await requests(mc_sim)
    assert seen["PATCH member"] == {"200": 1}
    assert seen[PUT] == {"200": 2}  # "before", written alone, and the tagged one
    assert seen[BATCH] == {"200": 1}
    assert await member(api, "after@example.com") is not None
