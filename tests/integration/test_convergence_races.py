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
from typing import Any

import httpx
import pytest

from support.http import IDLE_BELOW_SERVERS
from support.stack import RunningStack, running_stack
from support.topics import wait_for_records
from support.waiting import eventually
from tandem_devstack.stack import DEMO_ACCESSPLANIT_ADMIN_KEY, DEMO_MAILCHIMP_API_KEY, DEMO_MAILCHIMP_AUDIENCE
from tandem_shared.contracts import Flow, Stage, TraceRecord, subscriber_hash
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
    admin = {"Authorization": f"Bearer {DEMO_ACCESSPLANIT_ADMIN_KEY}"}
    mc_auth = ("any", DEMO_MAILCHIMP_API_KEY)
    ap = f"{stack.url('accessplanit_sim')}/api/v2/User"
    member_url = f"{stack.url('mailchimp_sim')}/3.0/lists/{DEMO_MAILCHIMP_AUDIENCE}/members/{subscriber_hash(email)}"
    async with httpx.AsyncClient(timeout=10, limits=IDLE_BELOW_SERVERS) as client:

        async def member_named(first_name: str) -> dict[str, Any] | None:
            response = await client.get(member_url, auth=mc_auth)
            found: dict[str, Any] | None = response.json() if response.status_code == 200 else None
            return found if found and found["merge_fields"].get("FNAME") == first_name else None

        async def user_named(first_name: str) -> dict[str, Any] | None:
            response = await client.get(f"{ap}/{user_id}", headers=admin)
            found: dict[str, Any] | None = response.json() if response.status_code == 200 else None
            return found if found and found.get("Forenames") == first_name else None

        await _start_of_a_second()
        created = await client.post(
            ap, headers=admin, json={"Forenames": "Ada", "Surname": "Race", "Email": email, "MainCompanyID": "2"}
        )
        assert created.status_code in (200, 201), created.text
        user_id = str(created.json()["ID"])
        await eventually(lambda: member_named("Ada"), timeout=30, interval=0.01)
        # Another Mailchimp API client (a signup form) changes the first name as soon as Tandem's write landed.
        edited = await client.patch(member_url, auth=mc_auth, json={"merge_fields": {"FNAME": "Grace"}})
        assert edited.status_code == 200, edited.text

        await eventually(lambda: user_named("Grace"), timeout=30)
        assert await member_named("Grace")

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
