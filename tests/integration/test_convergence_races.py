"""Races between Tandem's own write and a person's (or another API client's) edit, on the real broker with both
simulators: the later edit must end on both sides, and the trace must say which rule decided.

Mailchimp's `fired_at` has whole seconds, so an edit made in Mailchimp in the same second as the accessplanit change
Tandem just wrote there carries a timestamp *before* that change. It must not be judged older, nor an echo.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from support.http import IDLE_BELOW_SERVERS
from support.kafka import connect
from support.quiescence import held_backlog, wait_quiescent
from support.sims import ADMIN, MC_AUTH, Sims
from support.stack import RunningStack, running_stack
from support.topics import wait_for_records
from support.waiting import eventually
from tandem_devstack.stack import DEMO_MAILCHIMP_AUDIENCE, DEMO_MAILCHIMP_WEBHOOK_SECRET
from tandem_ingest.domain.signatures import sign
from tandem_ingest.mailchimp_webhook import SIGNATURE_HEADER as SIGNATURE
from tandem_shared.contracts import Flow, Stage, TraceRecord, TraceStatus
from tandem_shared.contracts.topics import TRACE
from tandem_shared.instance_store import put_instance, read_instances
from tandem_shared.secrets import resolve_secret

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    tmp: Path = tmp_path_factory.mktemp("races")
    with running_stack(kafka_bootstrap, redis_url, tmp) as running:
        yield running


async def _start_of_a_second() -> None:
    """Start at the top of a wall-clock second, so the pipeline's write usually lands within the same second."""
    await asyncio.sleep(1 - (time.time() % 1))


async def test_a_mailchimp_edit_in_the_same_second_as_tandems_write_reaches_accessplanit(stack: RunningStack) -> None:
    email = f"race.{uuid.uuid4().hex[:8]}@example.com"
    async with httpx.AsyncClient(timeout=10, limits=IDLE_BELOW_SERVERS) as client:
        sims = Sims(client, stack)
        await _start_of_a_second()
        user_id = await sims.create_user(email, last="Race")
        await eventually(lambda: sims.member_named(email, "Ada"), timeout=30, interval=0.01)
        # Another Mailchimp API client (a signup form) changes the first name as soon as Tandem's write landed.
        edited = await client.patch(sims.member_url(email), auth=MC_AUTH, json={"merge_fields": {"FNAME": "Grace"}})
        assert edited.status_code == 200, edited.text

        await eventually(lambda: sims.user_named(user_id, "Grace"), timeout=30)
        assert await sims.member_named(email, "Grace")

    def mailchimp_change(record: TraceRecord) -> bool:
        return (
            record.instance_id == stack.instance.id
            and record.stage is Stage.MAPPER
            and record.flow is Flow.MAILCHIMP_TO_ACCESSPLANIT
            and (record.contact_email or "").lower() == email
        )

    records = await wait_for_records(
        stack.kafka,
        TRACE,
        TraceRecord,
        where=mailchimp_change,
        until=lambda found: any(r.changes_detected for r in found),
    )
    decided = next(r for r in records if r.changes_detected)
    # Not an echo, not "older": the rule that decided is named (see docs/convergence.md).
    assert decided.summary.startswith("Mapped to an accessplanit upsert"), decided.summary


async def test_both_sides_move_the_contact_at_once_accessplanits_change_received_first(stack: RunningStack) -> None:
    """docs/convergence.md, "Moves": accessplanit's address change is received first, and Tandem's move of the
    member reaches Mailchimp only after Mailchimp's own change of the address. The change received later
    (Mailchimp's) wins on both sides, and no second member is made at accessplanit's address."""
    tag = uuid.uuid4().hex[:8]
    old, ap_new, mc_new = (f"{who}.{tag}@example.com" for who in ("move", "ap", "mc"))
    mc_sim = stack.url("mailchimp_sim")
    async with httpx.AsyncClient(timeout=10, limits=IDLE_BELOW_SERVERS) as client:
        sims = Sims(client, stack)

        async def patch_503s() -> int:
            stats = (await client.get(f"{mc_sim}/_sim/stats")).json()
            return int(stats["requests"].get("PATCH member", {}).get("503", 0))

        user_id = await sims.create_user(old, last="Move")
        await eventually(lambda: sims.member_named(old, "Ada"), timeout=30, interval=0.05)
        refused_before = await patch_503s()
        # Tandem's move is answered 503 once: retried later, after Mailchimp's own move below.
        fault = {"route": "PATCH member", "fault": "503", "count": 1}
        (await client.post(f"{mc_sim}/_sim/controls", json=fault)).raise_for_status()
        moved_in_ap = await client.put(f"{sims.users}/{user_id}", headers=ADMIN, json={"Email": ap_new})
        assert moved_in_ap.status_code == 200, moved_in_ap.text

        async def refused() -> bool | None:
            return True if await patch_503s() > refused_before else None

        await eventually(refused, timeout=30, interval=0.05)
        moved_in_mc = await client.patch(sims.member_url(old), auth=MC_AUTH, json={"email_address": mc_new})
        assert moved_in_mc.status_code == 200, moved_in_mc.text

        async def user_at_mailchimps_address() -> bool | None:
            found = await sims.user(user_id)
            return True if found and found["Email"] == mc_new else None

        await eventually(user_at_mailchimps_address, timeout=60, interval=0.1)

    # Measured, not slept: until Tandem's retried move (10 s on) has been taken up and nothing else waits.
    await wait_quiescent(stack)
    async with httpx.AsyncClient(timeout=10, limits=IDLE_BELOW_SERVERS) as client:
        sims = Sims(client, stack)
        assert await sims.member(ap_new) is None
        assert await sims.member(mc_new) is not None
        assert await sims.member(old) is None


async def test_of_two_address_changes_the_later_by_the_clocks_wins_though_received_first(stack: RunningStack) -> None:
    """docs/convergence.md, "Moves": accessplanit changes the address, and its delivery is late (its webhooks fail
    meanwhile); two seconds later Mailchimp changes the address too, and that change is received first. Mailchimp's
    is provably the later one, so it ends on both sides, whatever the order of receipt (received-later used to win:
    both sides ended at accessplanit's older address)."""
    tag = uuid.uuid4().hex[:8]
    old, ap_new, mc_new = (f"{who}.{tag}@example.com" for who in ("clock", "ap", "mc"))
    ap_sim = stack.url("accessplanit_sim")
    async with httpx.AsyncClient(timeout=10, limits=IDLE_BELOW_SERVERS) as client:
        sims = Sims(client, stack)

        async def accessplanit_webhooks(*, failing: bool) -> None:
            # While failing, a delivery is retried every 0.2 s, so it follows soon after they work again.
            retries = [0.2] * 300 if failing else [1.0, 2.0, 4.0, 8.0, 16.0]
            controls = {"webhooks_failing": failing, "webhook_retry_delays": retries}
            (await client.post(f"{ap_sim}/_sim/controls", json=controls)).raise_for_status()

        user_id = await sims.create_user(old, last="Clock")
        await eventually(lambda: sims.member_named(old, "Ada"), timeout=30, interval=0.05)
        await accessplanit_webhooks(failing=True)
        try:
            moved_in_ap = await client.put(f"{sims.users}/{user_id}", headers=ADMIN, json={"Email": ap_new})
            assert moved_in_ap.status_code == 200, moved_in_ap.text
            # Mailchimp's `fired_at` has whole seconds: its change is made in the second after next, so that its
            # stamp is later than accessplanit's change by the clocks, not only by the order of receipt.
            await asyncio.sleep(2.05 - (time.time() % 1))
            moved_in_mc = await client.patch(sims.member_url(old), auth=MC_AUTH, json={"email_address": mc_new})
            assert moved_in_mc.status_code == 200, moved_in_mc.text

            def mailchimps_move_written(record: TraceRecord) -> bool:
                return (
                    record.instance_id == stack.instance.id
                    and record.stage is Stage.WRITER
                    and record.flow is Flow.MAILCHIMP_TO_ACCESSPLANIT
                    and (record.contact_email or "").lower() == mc_new
                )

            # Received and decided first: the writer finds the user moved already, and writes nothing.
            await wait_for_records(stack.kafka, TRACE, TraceRecord, where=mailchimps_move_written, until=bool)
        finally:
            await accessplanit_webhooks(failing=False)

        async def both_at_mailchimps_address() -> bool | None:
            user, member = await sims.user(user_id), await sims.member(mc_new)
            return True if user and user["Email"] == mc_new and member else None

        await eventually(both_at_mailchimps_address, timeout=60, interval=0.1)

    await wait_quiescent(stack)
    async with httpx.AsyncClient(timeout=10, limits=IDLE_BELOW_SERVERS) as client:
        sims = Sims(client, stack)
        user = await sims.user(user_id)
        assert user is not None and user["Email"] == mc_new
        assert await sims.member(mc_new) is not None
        assert await sims.member(ap_new) is None and await sims.member(old) is None


async def _set_paused(stack: RunningStack, paused: bool) -> None:
    """As `tandem instances pause/resume` does: a new version of the instance in the instance store."""
    connection = connect(stack.kafka)
    current = (await read_instances(connection))[stack.instance.id]
    await put_instance(connection, current.model_copy(update={"paused": paused, "version": current.version + 1}))


async def _until_the_mapper_holds(stack: RunningStack, sims: Sims, probe_id: str, probe_email: str) -> int:
    """Edits the probe user until the mapper holds its change (it follows the pause); the held backlog then."""
    for n in range(20):
        name = f"Probe{n}"
        (await sims.client.put(f"{sims.users}/{probe_id}", headers=ADMIN, json={"Forenames": name})).raise_for_status()

        async def held_or_synced(name: str = name) -> int | None:
            held = await held_backlog(stack)
            if held:
                return held
            return -1 if await sims.member_named(probe_email, name) else None

        held = await eventually(held_or_synced, timeout=30, interval=0.05)
        if held > 0:
            return held
    raise AssertionError("the mapper did not follow the pause")


async def _our_hook(client: httpx.AsyncClient, stack: RunningStack) -> str:
    hooks = await client.get(f"{stack.url('mailchimp_sim')}/3.0/lists/{DEMO_MAILCHIMP_AUDIENCE}/webhooks", auth=MC_AUTH)
    ours = [h for h in hooks.json()["webhooks"] if f"/webhooks/mailchimp/{stack.instance.id}/" in h["url"]]
    assert len(ours) == 1, ours
    return str(ours[0]["id"])


async def _member_webhooks(client: httpx.AsyncClient, stack: RunningStack, hook: str, *, on: bool) -> None:
    url = f"{stack.url('mailchimp_sim')}/3.0/lists/{DEMO_MAILCHIMP_AUDIENCE}/webhooks/{hook}"
    events = {"profile": on, "upemail": on}
    (await client.patch(url, auth=MC_AUTH, json={"events": events})).raise_for_status()


def _fired_at() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")


async def _deliver(client: httpx.AsyncClient, stack: RunningStack, form: list[tuple[str, str]]) -> str:
    """A Mailchimp webhook delivery to ingest, signed as Mailchimp signs it for this instance; its execution id."""
    assert stack.instance.mailchimp.webhook_signing_secret is not None
    body = urlencode(form).encode()
    secret = resolve_secret(stack.instance.mailchimp.webhook_signing_secret)
    headers = {"Content-Type": "application/x-www-form-urlencoded", SIGNATURE: sign(secret, body, int(time.time()))}
    url = f"{stack.url('ingest')}/webhooks/mailchimp/{stack.instance.id}/{DEMO_MAILCHIMP_WEBHOOK_SECRET}"
    response = await client.post(url, content=body, headers=headers)
    assert response.status_code == 200, response.text
    return str(response.json()["execution_id"])


def _profile_form(member: dict[str, Any], fired_at: str) -> list[tuple[str, str]]:
    """Mailchimp's profile webhook of `member` (as its API returned it), in the shape the simulator sends."""
    email, merges = str(member["email_address"]), member["merge_fields"]
    return [
        ("type", "profile"),
        ("fired_at", fired_at),
        ("data[id]", str(member["unique_email_id"])),
        ("data[web_id]", str(member["web_id"])),
        ("data[list_id]", str(member["list_id"])),
        ("data[email]", email),
        ("data[email_type]", str(member["email_type"])),
        ("data[merges][EMAIL]", email),
        ("data[merges][FNAME]", str(merges.get("FNAME") or "")),
        ("data[merges][LNAME]", str(merges.get("LNAME") or "")),
        ("data[ip_opt]", str(member.get("ip_opt") or "127.0.0.1")),
    ]


def _upemail_form(member: dict[str, Any], old: str, fired_at: str) -> list[tuple[str, str]]:
    return [
        ("type", "upemail"),
        ("fired_at", fired_at),
        ("data[list_id]", str(member["list_id"])),
        ("data[new_id]", str(member["unique_email_id"])),
        ("data[new_email]", str(member["email_address"])),
        ("data[old_email]", old),
    ]


async def _users_at(sims: Sims, email: str) -> list[dict[str, Any]]:
    response = await sims.client.get(sims.users, headers=ADMIN, params={"$filter": f"Email eq '{email}'"})
    response.raise_for_status()
    found: list[dict[str, Any]] = response.json()["results"]
    return found


async def test_a_mailchimp_profile_change_released_before_its_upemail_makes_no_second_user(
    stack: RunningStack,
) -> None:
    """docs/convergence.md, "Moves": while the instance is paused Mailchimp moves a member from old@… to new@… and
    then its first and last names. The profile changes (keyed by new@…) are held before the upemail (keyed by
    old@…), so they are released first and find no contact at new@…. They create no user there: the upemail moves
    the user, and the names are written to it. The webhooks are delivered by the test in that order (the
    simulator's own, in the order Mailchimp fires them, are switched off meanwhile), each once the one before is
    held: the order does not depend on timing."""
    tag = uuid.uuid4().hex[:8]
    old, new, probe_email = (f"{who}.{tag}@example.com" for who in ("mover", "moved", "probe"))
    async with httpx.AsyncClient(timeout=10, limits=IDLE_BELOW_SERVERS) as client:
        sims = Sims(client, stack)
        user_id = await sims.create_user(old, last="Mover")
        probe_id = await sims.create_user(probe_email, last="Probe")
        await eventually(lambda: sims.member_named(old, "Ada"), timeout=30, interval=0.05)
        await eventually(lambda: sims.member_named(probe_email, "Ada"), timeout=30, interval=0.05)
        await wait_quiescent(stack)

        await _set_paused(stack, True)
        held = await _until_the_mapper_holds(stack, sims, probe_id, probe_email)
        hook = await _our_hook(client, stack)
        await _member_webhooks(client, stack, hook, on=False)
        try:
            moved = await client.patch(sims.member_url(old), auth=MC_AUTH, json={"email_address": new})
            assert moved.status_code == 200, moved.text
            upemail = _upemail_form(moved.json(), old, _fired_at())
            # The first name, then the last name: two profile changes, as a person editing them one by one makes.
            profiles = []
            for merges in ({"FNAME": "Grace"}, {"LNAME": "Hopper"}):
                named = await client.patch(sims.member_url(new), auth=MC_AUTH, json={"merge_fields": merges})
                assert named.status_code == 200, named.text
                profiles.append(_profile_form(named.json(), _fired_at()))
        finally:
            await _member_webhooks(client, stack, hook, on=True)
        executions = []
        for n, form in enumerate((*profiles, upemail), start=1):
            executions.append(await _deliver(client, stack, form))

            async def parked(expected: int = held + n) -> bool:
                return await held_backlog(stack) == expected

            await eventually(parked, timeout=30, interval=0.05)
        await _set_paused(stack, False)

    await wait_quiescent(stack)
    async with httpx.AsyncClient(timeout=10, limits=IDLE_BELOW_SERVERS) as client:
        sims = Sims(client, stack)
        assert await _users_at(sims, old) == []
        [user] = await _users_at(sims, new)
        assert (user["ID"], user["Forenames"], user["Surname"]) == (user_id, "Grace", "Hopper")
        assert await sims.member(old) is None
        assert await sims.member_named(new, "Grace") is not None
        assert (await sims.member(new) or {})["merge_fields"]["LNAME"] == "Hopper"

    def written(record: TraceRecord) -> bool:
        return record.execution_id in executions[:2] and record.stage in (Stage.WRITER, Stage.RETRY)

    def over(found: list[TraceRecord]) -> bool:
        return all(
            any(r.execution_id == e and r.status is not TraceStatus.RETRY_PENDING for r in found)
            for e in executions[:2]
        )

    records = await wait_for_records(stack.kafka, TRACE, TraceRecord, where=written, until=over)
    # The profile changes' writes update the moved user (or fold into one that does), never create one.
    assert not [r.summary for r in records if r.summary.startswith("Created")]
    assert any(r.summary.startswith(f"Updated accessplanit user {user_id} ({new}): ") for r in records), records
