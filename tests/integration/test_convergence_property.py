"""Convergence, as a property (issue 15): whatever schedule of edits people make on both sides, through the vendors'
APIs, once everything is quiescent both sides hold the same value for every mapped field, and it is the latest
edit's — where "latest" allows for the vendors' clock uncertainty (docs/convergence.md): an edit is only required to
lose to one made provably later (more than Mailchimp's one second after it ended).

Lean on purpose (it runs in `make test`): two contacts, schedules of up to five edits of the first name, gaps from
"at once" to a little over a second. Quiescence is measured (`support.quiescence`), never slept.

Found by it and fixed: an accessplanit edit and a Mailchimp edit of one contact 100 ms apart, each decided while
Tandem's write of the other was in flight, ended swapped (the first `@example`).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from support.quiescence import wait_quiescent
from support.stack import RunningStack, running_stack
from support.topics import read_all
from support.waiting import eventually
from tandem_devstack.stack import DEMO_ACCESSPLANIT_ADMIN_KEY, DEMO_MAILCHIMP_API_KEY, DEMO_MAILCHIMP_AUDIENCE
from tandem_shared.contracts import TraceRecord, subscriber_hash
from tandem_shared.contracts.topics import TRACE

pytestmark = pytest.mark.integration

CONTACTS = 2
UNCERTAINTY_S = 1.0  # Mailchimp's fired_at: whole seconds
ADMIN = {"Authorization": f"Bearer {DEMO_ACCESSPLANIT_ADMIN_KEY}"}
MC_AUTH = ("any", DEMO_MAILCHIMP_API_KEY)


@dataclass(frozen=True)
class Edit:
    contact: int
    side: str  # "ap" or "mc"
    gap_ms: int  # pause before this edit


@dataclass
class Made:
    edit: Edit
    value: str
    started: float
    ended: float


@dataclass
class Contact:
    email: str
    user_id: str


@dataclass
class World:
    stack: RunningStack
    contacts: list[Contact]

    def member_url(self, contact: Contact) -> str:
        return (
            f"{self.stack.url('mailchimp_sim')}/3.0/lists/{DEMO_MAILCHIMP_AUDIENCE}/members/"
            f"{subscriber_hash(contact.email)}"
        )

    def user_url(self, contact: Contact) -> str:
        return f"{self.stack.url('accessplanit_sim')}/api/v2/User/{contact.user_id}"


edits = st.builds(
    Edit,
    contact=st.integers(0, CONTACTS - 1),
    side=st.sampled_from(["ap", "mc"]),
    gap_ms=st.sampled_from([0, 0, 100, 400, 1200]),
)
schedules = st.lists(edits, min_size=1, max_size=5)


@pytest.fixture(scope="module")
def world(kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp: Path = tmp_path_factory.mktemp("convergence")
    with running_stack(kafka_bootstrap, redis_url, tmp) as stack:
        contacts = asyncio.run(_create_contacts(stack))
        yield World(stack, contacts)


async def _create_contacts(stack: RunningStack) -> list[Contact]:
    contacts = []
    async with httpx.AsyncClient(timeout=10) as client:
        for n in range(CONTACTS):
            email = f"conv{n}.{uuid.uuid4().hex[:8]}@example.com"
            created = await client.post(
                f"{stack.url('accessplanit_sim')}/api/v2/User",
                headers=ADMIN,
                json={"Forenames": "Start", "Surname": f"Contact{n}", "Email": email, "MainCompanyID": "2"},
            )
            assert created.status_code in (200, 201), created.text
            contacts.append(Contact(email, str(created.json()["ID"])))
        world = World(stack, contacts)
        for contact in contacts:
            url = world.member_url(contact)

            async def synced(url: str = url) -> bool:
                response = await client.get(url, auth=MC_AUTH)
                return response.status_code == 200

            await eventually(synced, timeout=60)
    await wait_quiescent(stack)
    return contacts


async def _story(world: World, contact: Contact) -> str:
    """What Tandem did for the contact, in trace order: the counter-example's explanation."""

    def ours(record: TraceRecord) -> bool:
        return record.instance_id == world.stack.instance.id and (
            (record.contact_email or "").lower() == contact.email or record.accessplanit_user_id == contact.user_id
        )

    records = sorted(await read_all(world.stack.kafka, TRACE, TraceRecord, where=ours), key=lambda r: r.finished_at)
    return "\n".join(
        f"{r.finished_at:%H:%M:%S.%f} {r.stage.value} {r.flow.value if r.flow else ''}: {r.summary} "
        f"{[line.message for line in r.logs]} in={r.output.data_in}"
        for r in records
    )


async def _run(world: World, schedule: list[Edit]) -> None:
    tag = uuid.uuid4().hex[:6]
    made: list[Made] = []
    async with httpx.AsyncClient(timeout=10) as client:
        for n, edit in enumerate(schedule):
            await asyncio.sleep(edit.gap_ms / 1000)  # the schedule's own pacing, not a wait for Tandem
            contact = world.contacts[edit.contact]
            value = f"N{tag}{n}"
            started = time.time()
            if edit.side == "ap":
                response = await client.put(world.user_url(contact), headers=ADMIN, json={"Forenames": value})
            else:
                response = await client.patch(
                    world.member_url(contact), auth=MC_AUTH, json={"merge_fields": {"FNAME": value}}
                )
            assert response.status_code == 200, response.text
            made.append(Made(edit, value, started, time.time()))

        await wait_quiescent(world.stack)

        for index, contact in enumerate(world.contacts):
            ours = [m for m in made if m.edit.contact == index]
            if not ours:
                continue
            member: dict[str, Any] = (await client.get(world.member_url(contact), auth=MC_AUTH)).json()
            user: dict[str, Any] = (await client.get(world.user_url(contact), headers=ADMIN)).json()
            in_mailchimp, in_accessplanit = member["merge_fields"]["FNAME"], user["Forenames"]
            if in_mailchimp != in_accessplanit:
                story = await _story(world, contact)
                raise AssertionError(
                    f"contact {index} diverged: Mailchimp {in_mailchimp!r}, accessplanit {in_accessplanit!r}; "
                    f"edits {made}; trace:\n{story}"
                )
            final = next((m for m in ours if m.value == in_accessplanit), None)
            assert final is not None, f"contact {index} ended on {in_accessplanit!r}, none of its edits: {made}"
            later = [m for m in ours if m.started > final.ended + UNCERTAINTY_S]
            assert not later, f"contact {index} ended on {final.value}, older than {later}: {made}"


@pytest.mark.timeout(600)
@settings(
    max_examples=10,
    deadline=None,
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@example(schedule=[Edit(1, "ap", 0), Edit(1, "mc", 100), Edit(0, "ap", 400)])
@example(schedule=[Edit(1, "mc", 100), Edit(1, "ap", 0), Edit(1, "ap", 0)])
@given(schedule=schedules)
def test_both_sides_converge_on_the_latest_edit(world: World, schedule: list[Edit]) -> None:
    asyncio.run(_run(world, schedule))
