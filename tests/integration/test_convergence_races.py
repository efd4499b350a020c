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
from support.sims import MC_AUTH, Sims
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
