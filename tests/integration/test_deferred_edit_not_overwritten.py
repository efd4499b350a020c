"""An accessplanit edit whose delivery was deferred to the catch-up read is not written over by Tandem before that
read (issue 15, seen in the soak at 20 edits/s), on the real broker with both simulators.

Every unsigned delivery is deferred here (a re-read allowance of 0 a minute), and the test holds the poller's lease
on the instance, so the catch-up read waits until the test lets it go. A Mailchimp edit is on its way to
accessplanit (accessplanit is slow while the writer looks the user up) when a person edits the same field there.
Before this fix the writer's write landed over the person's later edit, the poll then read Tandem's own value (an
echo) and the edit was lost; now the writer leaves the field out, says why, and the poll carries the edit to
Mailchimp (docs/convergence.md).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.http import IDLE_BELOW_SERVERS
from support.sims import ADMIN, MC_AUTH, Sims
from support.stack import RunningStack, running_stack
from support.topics import wait_for_records
from support.waiting import eventually
from tandem_shared.contracts import Flow, Stage, TraceRecord
from tandem_shared.contracts.topics import TRACE
from tandem_shared.redis.client import connect_url
from tandem_shared.redis.keys import poller_deferred_key, poller_lock_key

pytestmark = pytest.mark.integration

# As in test_convergence_accessplanit_reads: accessplanit answers this late while the writer's lookup of the user is
# on its way, and the person's edit is made PICK_UP_S after the decision (staging only; what follows is measured).
SLOW_MS = 3500
PICK_UP_S = 2.0


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    tmp: Path = tmp_path_factory.mktemp("deferred-edit")
    # Every delivery deferred; the poll then comes round every 2 s (a deferral is settled only by a round that began
    # over a second after it arrived).
    ingest = {
        "TANDEM_INGEST_ACCESSPLANIT_REREADS_PER_MINUTE": "0",
        "TANDEM_INGEST_POLL_INTERVAL_S": "2",
        "TANDEM_INGEST_POLL_WAKE_MIN_INTERVAL_S": "1",
    }
    with running_stack(kafka_bootstrap, redis_url, tmp, service_env={"ingest": ingest}) as running:
        yield running


async def test_a_write_leaves_out_an_edit_waiting_for_the_catch_up_read(stack: RunningStack) -> None:
    email = f"deferred.{uuid.uuid4().hex[:8]}@example.com"
    ap_sim = stack.url("accessplanit_sim")
    redis = connect_url(stack.redis)
    lease = poller_lock_key(stack.instance.id)

    def for_contact(record: TraceRecord) -> bool:
        return record.instance_id == stack.instance.id and (record.contact_email or "").lower() == email

    async def none_deferred() -> bool:
        return await redis.zcard(poller_deferred_key(stack.instance.id)) == 0

    try:
        async with httpx.AsyncClient(timeout=30, limits=IDLE_BELOW_SERVERS) as client:
            sims = Sims(client, stack)

            async def slow(latency_ms: int) -> None:
                (await client.post(f"{ap_sim}/_sim/controls", json={"latency_ms": latency_ms})).raise_for_status()

            user_id = await sims.create_user(email, last="Deferred")  # itself deferred, then read by the poll
            await eventually(lambda: sims.member_named(email, "Ada"), timeout=60)
            await eventually(none_deferred, timeout=60)
            # The poller's lease, taken from it: no catch-up read until the test gives it back.
            await redis.set(lease, "the test", px=120_000)

            await slow(SLOW_MS)
            try:
                edited = await client.patch(
                    sims.member_url(email), auth=MC_AUTH, json={"merge_fields": {"FNAME": "Grace"}}
                )
                assert edited.status_code == 200, edited.text
                await wait_for_records(
                    stack.kafka,
                    TRACE,
                    TraceRecord,
                    where=lambda r: (
                        for_contact(r) and r.stage is Stage.MAPPER and r.flow is Flow.MAILCHIMP_TO_ACCESSPLANIT
                    ),
                    until=lambda found: any(r.changes_detected for r in found),
                )
                await asyncio.sleep(PICK_UP_S)
            finally:
                await slow(0)
            # A person edits the first name while the writer's lookup for "Grace" is still on its way; the delivery
            # of that edit is deferred to the catch-up read.
            person = await client.put(f"{sims.users}/{user_id}", headers=ADMIN, json={"Forenames": "Hedy"})
            assert person.status_code == 200, person.text

            left_out = await wait_for_records(
                stack.kafka,
                TRACE,
                TraceRecord,
                where=lambda r: for_contact(r) and r.stage is Stage.WRITER and "catch-up read" in r.summary,
                until=bool,
            )
            assert "Forenames holds 'Hedy', a value Tandem did not write nor see" in left_out[0].summary
            assert (await sims.user(user_id) or {}).get("Forenames") == "Hedy"

            await redis.delete(lease)
            await eventually(lambda: sims.member_named(email, "Hedy"), timeout=60)
            await eventually(none_deferred, timeout=60)
            assert (await sims.user(user_id) or {}).get("Forenames") == "Hedy"
    finally:
        await redis.delete(lease)
        await redis.aclose()
