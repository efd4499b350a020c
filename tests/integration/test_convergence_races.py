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
from pathlib import Path

import httpx
import pytest

from support.http import IDLE_BELOW_SERVERS
from support.quiescence import wait_quiescent
from support.sims import ADMIN, MC_AUTH, Sims
from support.stack import RunningStack, running_stack
from support.topics import wait_for_records
from support.waiting import eventually
from tandem_shared.contracts import Flow, Stage, TraceRecord
from tandem_shared.contracts.topics import TRACE

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
