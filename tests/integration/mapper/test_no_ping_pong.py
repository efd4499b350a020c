"""No ping-pong between the two systems, with every service running as a process against both simulators.

One edit in either system causes exactly one write to the other and nothing after it; an edit made by someone else
through the API still syncs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.stack import RunningStack, running_stack
from support.topics import read_all, wait_for_records
from support.waiting import eventually
from tandem_devstack.stack import (
    DEMO_ACCESSPLANIT_ADMIN_KEY,
    DEMO_MAILCHIMP_API_KEY,
    DEMO_MAILCHIMP_AUDIENCE,
)
from tandem_shared.contracts import (
    Stage,
    SyncCommand,
    System,
    TraceRecord,
    subscriber_hash,
)
from tandem_shared.contracts.topics import COMMANDS, TRACE

pytestmark = pytest.mark.integration

ECHO_FROM_MAILCHIMP = "Echo of Tandem's own write to Mailchimp: not sent back"
ECHO_FROM_ACCESSPLANIT = "Echo of Tandem's own write to accessplanit: not sent back"
INTEGRATION_USER = "900001"


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    tmp: Path = tmp_path_factory.mktemp("no-ping-pong")
    with running_stack(kafka_bootstrap, redis_url, tmp) as running:
        yield running


def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {DEMO_ACCESSPLANIT_ADMIN_KEY}"}


def member_url(stack: RunningStack, email: str) -> str:
    return f"{stack.url('mailchimp_sim')}/3.0/lists/{DEMO_MAILCHIMP_AUDIENCE}/members/{subscriber_hash(email)}"


async def member(client: httpx.AsyncClient, stack: RunningStack, email: str) -> dict[str, Any] | None:
    response = await client.get(member_url(stack, email), auth=("any", DEMO_MAILCHIMP_API_KEY))
    return response.json() if response.status_code == 200 else None


async def commands_for(stack: RunningStack, email: str) -> list[SyncCommand]:
    return await read_all(
        stack.kafka,
        COMMANDS,
        SyncCommand,
        where=lambda c: c.instance_id == stack.instance.id and (c.identity.email or "").lower() == email.lower(),
    )


async def writes_by(stack: RunningStack, email: str, target: System) -> list[TraceRecord]:
    """What the writer applied to `target` for this contact (its trace records), in the order they happened."""
    records = await read_all(
        stack.kafka,
        TRACE,
        TraceRecord,
        where=lambda r: (
            r.instance_id == stack.instance.id
            and r.stage is Stage.WRITER
            and (r.contact_email or "").lower() == email.lower()
            and r.flow is not None
            and r.flow.target is target
        ),
    )
    return sorted(records, key=lambda r: r.started_at)


async def writes_reached(stack: RunningStack, email: str, target: System, count: int) -> None:
    """Wait until the writer has traced `count` writes to `target` (a write lands before its trace is published)."""
    await wait_for_records(
        stack.kafka,
        TRACE,
        TraceRecord,
        where=lambda r: (
            r.instance_id == stack.instance.id
            and r.stage is Stage.WRITER
            and (r.contact_email or "").lower() == email.lower()
            and r.flow is not None
            and r.flow.target is target
        ),
        until=lambda found: len(found) >= count,
        timeout=60,
    )


async def echo_seen(stack: RunningStack, email: str, summary: str, count: int = 1) -> list[TraceRecord]:
    """Wait until the mapper has stopped `count` echoes: the only way a write could cause another one."""
    return await wait_for_records(
        stack.kafka,
        TRACE,
        TraceRecord,
        where=lambda r: (
            r.instance_id == stack.instance.id
            and r.stage is Stage.MAPPER
            and (r.contact_email or "").lower() == email.lower()
            and r.summary == summary
        ),
        until=lambda found: len(found) >= count,
        timeout=60,
    )


async def test_an_accessplanit_edit_writes_mailchimp_once_and_the_echo_goes_no_further(stack: RunningStack) -> None:
    email = f"ada.{uuid.uuid4().hex[:8]}@example.com"
    async with httpx.AsyncClient(timeout=10) as client:
        created = await client.post(
            f"{stack.url('accessplanit_sim')}/api/v2/User",
            headers=admin(),
            json={"Forenames": "Ada", "Surname": "Lovelace", "Email": email, "MainCompanyID": "2"},
        )
        assert created.status_code == 201, created.text
        user_id = str(created.json()["ID"])

        async def synced() -> dict[str, Any] | None:
            return await member(client, stack, email)

        found = await eventually(synced, timeout=60)
        assert found["merge_fields"]["LNAME"] == "Lovelace"

        # Mailchimp reports Tandem's write back (its subscribe webhook, through ingest): the mapper stops it.
        await writes_reached(stack, email, System.MAILCHIMP, 1)
        await echo_seen(stack, email, ECHO_FROM_MAILCHIMP)

        audit = await client.get(
            f"{stack.url('accessplanit_sim')}/api/v2/SystemEventLog",
            headers=admin(),
            params={"$filter": f"ObjectID eq '{user_id}'"},
        )
    assert [c.target for c in await commands_for(stack, email)] == [System.MAILCHIMP]
    assert len(await writes_by(stack, email, System.MAILCHIMP)) == 1
    assert [(e["Action"], e["UserID"]) for e in audit.json()["results"]] == [("Created", "900002")]


async def test_one_edit_in_either_system_causes_exactly_one_write_to_the_other(stack: RunningStack) -> None:
    email = f"grace.{uuid.uuid4().hex[:8]}@example.com"
    ap = stack.url("accessplanit_sim")
    async with httpx.AsyncClient(timeout=10) as client:
        # 1. A person adds a contact in Mailchimp: exactly one accessplanit user appears, written by Tandem.
        added = await client.put(
            f"{stack.url('mailchimp_sim')}/_sim/admin/lists/{DEMO_MAILCHIMP_AUDIENCE}/members/{email}",
            json={
                "email_address": email,
                "status_if_new": "subscribed",
                "merge_fields": {"FNAME": "Grace", "LNAME": "Hopper"},
            },
        )
        assert added.status_code == 200, added.text

        async def user() -> dict[str, Any] | None:
            response = await client.get(f"{ap}/api/v2/User", headers=admin(), params={"$filter": f"Email eq '{email}'"})
            results = response.json()["results"]
            return results[0] if results else None

        created = await eventually(user, timeout=60)
        assert (created["Forenames"], created["Surname"]) == ("Grace", "Hopper")
        assert created["UpdatedByID"] == INTEGRATION_USER
        await writes_reached(stack, email, System.ACCESSPLANIT, 1)
        await echo_seen(stack, email, ECHO_FROM_ACCESSPLANIT)
        assert len(await writes_by(stack, email, System.ACCESSPLANIT)) == 1
        assert await writes_by(stack, email, System.MAILCHIMP) == []

        # 2. A person edits the user in accessplanit: exactly one Mailchimp write, and its echo stops.
        edited = await client.put(f"{ap}/api/v2/User/{created['ID']}", headers=admin(), json={"Surname": "Murray"})
        assert edited.status_code == 200, edited.text

        async def renamed() -> bool:
            found = await member(client, stack, email)
            return found is not None and found["merge_fields"]["LNAME"] == "Murray"

        await eventually(renamed, timeout=60)
        await writes_reached(stack, email, System.MAILCHIMP, 1)
        await echo_seen(stack, email, ECHO_FROM_MAILCHIMP)
        assert len(await writes_by(stack, email, System.MAILCHIMP)) == 1
        assert len(await writes_by(stack, email, System.ACCESSPLANIT)) == 1

        # 3. Another application changes the contact through Mailchimp's API: that still syncs.
        patched = await client.patch(
            member_url(stack, email),
            auth=("other-app", DEMO_MAILCHIMP_API_KEY),
            json={"merge_fields": {"FNAME": "Amazing Grace"}},
        )
        assert patched.status_code == 200, patched.text

        async def followed() -> bool:
            found = await user()
            return found is not None and found["Forenames"] == "Amazing Grace"

        await eventually(followed, timeout=60)
        await writes_reached(stack, email, System.ACCESSPLANIT, 2)
        await echo_seen(stack, email, ECHO_FROM_ACCESSPLANIT, count=2)
        assert len(await writes_by(stack, email, System.ACCESSPLANIT)) == 2
        assert len(await writes_by(stack, email, System.MAILCHIMP)) == 1
