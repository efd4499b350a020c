"""An email change Mailchimp refuses (its member is not subscribed), on the real broker with both simulators: the
trace says which address each side holds and why, nothing retries or ping-pongs, and the contact's later edits on
either side still converge between the two addresses — no member is created at the new address (that would
subscribe a contact who opted out), no user at the old one."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.quiescence import wait_quiescent
from support.stack import RunningStack, running_stack
from support.topics import read_all
from support.waiting import eventually
from tandem_devstack.stack import DEMO_ACCESSPLANIT_ADMIN_KEY, DEMO_MAILCHIMP_API_KEY, DEMO_MAILCHIMP_AUDIENCE
from tandem_shared.contracts import Stage, TraceRecord, TraceStatus, subscriber_hash
from tandem_shared.contracts.topics import TRACE

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    tmp: Path = tmp_path_factory.mktemp("refused-move")
    with running_stack(kafka_bootstrap, redis_url, tmp) as running:
        yield running


async def test_a_refused_email_change_is_traced_once_and_later_edits_converge(stack: RunningStack) -> None:
    tag = uuid.uuid4().hex[:8]
    old, new = f"quit.{tag}@example.com", f"moved.{tag}@example.com"
    admin = {"Authorization": f"Bearer {DEMO_ACCESSPLANIT_ADMIN_KEY}"}
    mc_auth = ("any", DEMO_MAILCHIMP_API_KEY)
    ap = f"{stack.url('accessplanit_sim')}/api/v2/User"
    members = f"{stack.url('mailchimp_sim')}/3.0/lists/{DEMO_MAILCHIMP_AUDIENCE}/members"
    async with httpx.AsyncClient(timeout=10) as client:

        async def member(email: str) -> dict[str, Any] | None:
            response = await client.get(f"{members}/{subscriber_hash(email)}", auth=mc_auth)
            return response.json() if response.status_code == 200 else None

        async def member_named(first_name: str) -> dict[str, Any] | None:
            found = await member(old)
            return found if found and found["merge_fields"].get("FNAME") == first_name else None

        async def users(email: str) -> list[dict[str, Any]]:
            response = await client.get(ap, headers=admin, params={"$filter": f"Email eq '{email}'"})
            response.raise_for_status()
            found: list[dict[str, Any]] = response.json()["results"]
            return found

        async def user_named(first_name: str) -> dict[str, Any] | None:
            return next((u for u in await users(new) if u.get("Forenames") == first_name), None)

        created = await client.post(
            ap, headers=admin, json={"Forenames": "Ada", "Surname": "Quit", "Email": old, "MainCompanyID": "2"}
        )
        assert created.status_code in (200, 201), created.text
        user_id = str(created.json()["ID"])
        await eventually(lambda: member_named("Ada"), timeout=30)
        unsubscribed = await client.patch(
            f"{members}/{subscriber_hash(old)}", auth=mc_auth, json={"status": "unsubscribed"}
        )
        assert unsubscribed.json()["status"] == "unsubscribed"

        # The address and the surname change in one edit: the surname still reaches the member Mailchimp kept.
        moved = await client.put(f"{ap}/{user_id}", headers=admin, json={"Email": new, "Surname": "Moved"})
        assert moved.status_code == 200, moved.text
        await wait_quiescent(stack)

        writes = await read_all(
            stack.kafka,
            TRACE,
            TraceRecord,
            where=lambda r: (
                r.instance_id == stack.instance.id
                and r.stage in (Stage.WRITER, Stage.RETRY)
                and "Not moved:" in r.summary
            ),
        )
        # Once, failed for good (no retry tier): Mailchimp would refuse again.
        [refusal] = writes
        assert refusal.status is TraceStatus.DEAD_LETTERED
        assert refusal.error is not None and refusal.error.permanent
        assert refusal.error.message.startswith(
            f"Not moved: accessplanit holds this contact at {new}, Mailchimp keeps it at {old}, because Mailchimp "
            f"refused the address change ({old} was not changed to {new}:"
        )
        assert 'status is "unsubscribed."' in refusal.summary
        assert refusal.error.message.endswith(f"; LNAME written to the member at {old}")
        assert await member(new) is None
        kept = await member(old)
        assert kept is not None and kept["merge_fields"]["LNAME"] == "Moved" and kept["status"] == "unsubscribed"

        # Later edits, on either side, go between the two addresses.
        edited = await client.put(f"{ap}/{user_id}", headers=admin, json={"Forenames": "Augusta"})
        assert edited.status_code == 200, edited.text
        kept = await eventually(lambda: member_named("Augusta"), timeout=30)
        assert kept["status"] == "unsubscribed"

        in_mailchimp = await client.patch(
            f"{members}/{subscriber_hash(old)}", auth=mc_auth, json={"merge_fields": {"FNAME": "Hedy"}}
        )
        assert in_mailchimp.status_code == 200, in_mailchimp.text
        await eventually(lambda: user_named("Hedy"), timeout=30)

        # Quiet afterwards (no ping-pong), and neither side gained a contact at the other's address.
        await wait_quiescent(stack)
        assert await member(new) is None
        assert await users(old) == []
        assert (await member_named("Hedy") or {}).get("status") == "unsubscribed"
