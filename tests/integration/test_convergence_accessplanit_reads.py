"""An accessplanit-side race on the real broker with both simulators, settled by an authoritative read.

Tandem is writing a Mailchimp edit to accessplanit while a person edits the same field there: Tandem's write lands
over the person's (later) edit. The person's change is sent to Mailchimp and written back to accessplanit once
Tandem's write has landed — because the writer's read of the user shows Tandem's value there, not because the
mapper guessed (docs/convergence.md).
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

pytestmark = pytest.mark.integration

# accessplanit answers this late while Tandem's write is staged: long enough for the person's edit to land and be
# decided on before that write; the repair then waits for it (in place, then deferred while its mark counts, 10 s).
SLOW_MS = 3500
# Time for the writer to take the command and send its first request (which then answers SLOW_MS later). The
# person's edit must come after that request left and before it lands: any send within PICK_UP_S of the decision
# lands at SLOW_MS / 1000 s or later, so 2 s leaves the writer time to pick up under load (1 s did not, once, in CI).
# Staging only: what the test waits for afterwards is measured.
PICK_UP_S = 2.0


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    tmp: Path = tmp_path_factory.mktemp("ap-reads")
    with running_stack(kafka_bootstrap, redis_url, tmp) as running:
        yield running


async def test_tandems_write_landing_over_a_persons_edit_is_found_by_a_read_and_repaired(stack: RunningStack) -> None:
    email = f"apread.{uuid.uuid4().hex[:8]}@example.com"
    ap_sim = stack.url("accessplanit_sim")

    def for_contact(record: TraceRecord) -> bool:
        return record.instance_id == stack.instance.id and (record.contact_email or "").lower() == email

    async with httpx.AsyncClient(timeout=30, limits=IDLE_BELOW_SERVERS) as client:
        sims = Sims(client, stack)

        async def slow(latency_ms: int) -> None:
            (await client.post(f"{ap_sim}/_sim/controls", json={"latency_ms": latency_ms})).raise_for_status()

        user_id = await sims.create_user(email, last="Race")
        await eventually(lambda: sims.member_named(email, "Ada"), timeout=30)

        await slow(SLOW_MS)
        try:
            # A Mailchimp edit: Tandem decides to write "Grace" to accessplanit and starts (accessplanit is slow).
            edited = await client.patch(sims.member_url(email), auth=MC_AUTH, json={"merge_fields": {"FNAME": "Grace"}})
            assert edited.status_code == 200, edited.text
            await wait_for_records(
                stack.kafka,
                TRACE,
                TraceRecord,
                where=lambda r: for_contact(r) and r.stage is Stage.MAPPER and r.flow is Flow.MAILCHIMP_TO_ACCESSPLANIT,
                until=lambda found: any(r.changes_detected for r in found),
            )
            await asyncio.sleep(PICK_UP_S)
        finally:
            await slow(0)
        # A person changes the first name in accessplanit while Tandem's "Grace" is still on its way there.
        person = await client.put(f"{sims.users}/{user_id}", headers=ADMIN, json={"Forenames": "Hedy"})
        assert person.status_code == 200, person.text

        await eventually(lambda: sims.member_named(email, "Hedy"), timeout=60)
        await eventually(lambda: sims.user_named(user_id, "Hedy"), timeout=60)

    repairs = await wait_for_records(
        stack.kafka,
        TRACE,
        TraceRecord,
        where=lambda r: for_contact(r) and r.stage is Stage.WRITER and "Re-read from accessplanit" in r.summary,
        until=bool,
    )
    assert any(
        "Forenames holds 'Grace', the value of Tandem's write that landed over this change, so the change is "
        "written back" in r.summary
        for r in repairs
    ), [r.summary for r in repairs]
