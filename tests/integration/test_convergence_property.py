"""Convergence, as a property (issue 15): whatever schedule of edits people make on both sides, through the vendors'
APIs, once everything is quiescent both sides hold the same value for every mapped field (first name, last name,
email address), and it is the latest edit's — by the ordering of docs/convergence.md:

- an edit loses only to one made provably later: more than Mailchimp's one second after it ended (either side), or,
  between two accessplanit edits (a millisecond clock), simply after it;
- an edit made once Tandem had written an earlier value to its side (so received after it) wins over that value;
- an email change moves the contact on the other side (docs/instances.md, "What the mapper does with every change"):
  the contact is followed to its latest address, and no member is left at an address it moved from.

Schedules mix same-second pairs on both sides, bursts on one contact, edits made while Tandem's write of an earlier
one is in flight or the moment it lands, and edits made while the instance is paused (paused and resumed as an
operator does, through the instance store; what was held is released on resume). Quiescence is measured
(`support.quiescence`: lag zero, nothing held, nothing new traced), never slept.

Lean on purpose (it runs in `make test`): two contacts, up to six edits, few examples; shrinking is bounded
(`ShrinkBudget`). Failing schedules found are kept as `@example`s; the hypothesis database is not used.

Found by it and fixed: an accessplanit edit and a Mailchimp edit of one contact 100 ms apart, each decided while
Tandem's write of the other was in flight, ended swapped (the first `@example`).

Also found and fixed: a Mailchimp edit of the last name and an accessplanit edit of the first name of one contact at
once (`[mc last, ap first]`, gap 0). Ingest read the user back before Tandem's write of the last name; the mapper
decided that change after the write was recorded and took the old last name, unchanged in accessplanit, for a later
accessplanit change the write had overwritten, and wrote it back to both sides. The sync state now remembers the
value a write replaced (`SideState.replaced_at`). Not reproducible on demand, so its `@example` is a plain one: it
passes whichever way the race goes.

Also found and fixed: an accessplanit edit overwritten by the release of an older held Mailchimp change after a
resume, its webhook late (`RELEASE_OVER_AN_EDIT`, a plain `@example`). Ingest read the user back only after that
write and took the value for Tandem's own, so the edit was lost. A released change is now checked on its
accessplanit target first: a field holding a value Tandem does not know, changed after the held change, is left
out, and the edit's own event carries it (docs/convergence.md).

Also found and fixed: an email change racing an edit of the same contact on the other side, three ways (plain
`@example`s). A Mailchimp edit at the old address while accessplanit's email change was on its way, either way
round (`EDIT_AT_THE_OLD_ADDRESS`, `MOVE_UNDER_AN_EDIT`): the edit's change named an address no accessplanit user
had any more, dead-lettered (no user to create), lost. Both sides changing the address at once
(`BOTH_SIDES_MOVE`): a second member was created at accessplanit's new address, the move to Mailchimp's was
dead-lettered. A move now leaves a forward pointer at the old address and accessplanit's state keeps the user id:
the edit reaches the user at its new address, and of two moves the one received later wins on both sides
(docs/convergence.md, "Moves").

Also found and fixed (by a random run, before schedules were fixed): Mailchimp's email, first and last name changed
while paused, then an accessplanit first-name edit (`PROFILE_BEFORE_ITS_MOVE`, a plain `@example`: whichever
change is held first). The profile changes, keyed by the new address, were released before the upemail, keyed by
the old one: the first created a second accessplanit user at the new address, and the upemail left the user at the
old one. Such a create now waits for the move, and the upemail still moves the user (docs/convergence.md, "Moves").

Found by it and not fixed yet (known gaps; generated schedules are kept off them, see `_moved`, `Pause.resume`,
`_paused_across_a_move`):
- generated schedules still keep email changes apart from edits on the other side (`_moved`), so the races above
  are proven by their examples only; not fixed among them: both sides moving the contact with accessplanit's change
  received first (docs/convergence.md, "Moves");
- an accessplanit edit made between the release's read of the user and its write (the check above reads before it
  writes): `Pause.resume` lets the schedule go on once the release is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from hypothesis import HealthCheck, Phase, example, given, reject, settings
from hypothesis import strategies as st

from support.http import IDLE_BELOW_SERVERS
from support.kafka import connect
from support.quiescence import wait_quiescent
from support.stack import RunningStack, running_stack
from support.topics import read_all
from support.waiting import eventually
from tandem_devstack.stack import DEMO_ACCESSPLANIT_ADMIN_KEY, DEMO_MAILCHIMP_API_KEY, DEMO_MAILCHIMP_AUDIENCE
from tandem_shared.contracts import Stage, TraceRecord, TraceStatus, subscriber_hash
from tandem_shared.contracts.topics import TRACE
from tandem_shared.instance_store import put_instance, read_instances
from tandem_shared.kafka import partitions_of

pytestmark = pytest.mark.integration

CONTACTS = 2
UNCERTAINTY_S = 1.0  # Mailchimp's fired_at: whole seconds
ADMIN = {"Authorization": f"Bearer {DEMO_ACCESSPLANIT_ADMIN_KEY}"}
MC_AUTH = ("any", DEMO_MAILCHIMP_API_KEY)
# field -> (accessplanit User field, Mailchimp merge field); the email is the member's address, not a merge field.
FIELDS = {"first": ("Forenames", "FNAME"), "last": ("Surname", "LNAME"), "email": ("Email", None)}


@dataclass(frozen=True)
class Edit:
    contact: int
    side: str  # "ap" or "mc"
    field: str  # a key of FIELDS
    gap_ms: int  # pause before this edit
    paused: bool = False  # made while the instance is paused (a run of paused edits shares one pause)
    on_landing: bool = False  # made the moment Tandem's write of the field's previous edit lands on this side
    # Made at once, racing an email change of the contact on the other side (see `_moved`): examples only.
    racing: bool = False
    # An accessplanit edit whose webhook is delivered late: the delivery fails (accessplanit retries it) until the
    # schedule is over and the stack quiet. A known gap (RELEASE_OVER_AN_EDIT); never generated.
    late_webhook: bool = False


@dataclass
class Made:
    edit: Edit
    value: str
    started: float
    ended: float
    follows: frozenset[str] = frozenset()  # values Tandem had written to this edit's side before it was made


@dataclass
class Contact:
    user_id: str
    # What both sides held at the start of the current schedule (they are equal after quiescence).
    values: dict[str, str] = field(default_factory=dict)
    addresses: list[str] = field(default_factory=list)  # every address the contact had, latest last


@dataclass
class World:
    stack: RunningStack
    contacts: list[Contact]
    probe: Contact  # edited only to see that the mapper follows a pause
    # A failed schedule may leave its contacts apart: the next one (a shrink candidate, say) starts on new ones.
    dirty: bool = False

    def __repr__(self) -> str:  # the counter-example's report names the schedule, not the stack's environment
        return f"World(instance={self.stack.instance.id!r}, users={[c.user_id for c in self.contacts]})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # how hypothesis prints it
        printer.text(repr(self))

    def member_url(self, email: str) -> str:
        return f"{self.stack.url('mailchimp_sim')}/3.0/lists/{DEMO_MAILCHIMP_AUDIENCE}/members/{subscriber_hash(email)}"

    def user_url(self, contact: Contact) -> str:
        return f"{self.stack.url('accessplanit_sim')}/api/v2/User/{contact.user_id}"


class ShrinkBudget:
    """Bounds shrinking: once the first failure is SHRINK_S old, only the last failing schedule runs again (the
    final replay hypothesis makes of the example it reports); every other candidate is rejected at once, so the
    shrinker stops within seconds with the smallest failure it found. Hypothesis' own cap (five minutes) is later."""

    SHRINK_S = 150.0

    def __init__(self) -> None:
        self.first_failure: float | None = None
        self.last_failing: list[Edit] | None = None

    def admit(self, schedule: list[Edit]) -> None:
        spent = self.first_failure is not None and time.monotonic() - self.first_failure > self.SHRINK_S
        if spent and schedule != self.last_failing:
            reject()

    def failed(self, schedule: list[Edit]) -> None:
        self.first_failure = self.first_failure or time.monotonic()
        self.last_failing = schedule


def _edit(
    contact: int,
    side: str,
    fld: str,
    gap_ms: int,
    *,
    paused: bool = False,
    on_landing: bool = False,
    racing: bool = False,
    late_webhook: bool = False,
) -> Edit:
    return Edit(contact, side, fld, gap_ms, paused, on_landing, racing, late_webhook)


def _paused_across_a_move(schedule: list[Edit]) -> bool:
    """One pause holding a contact's email change and an edit of it on the other side: released in order on
    resume, one of them names an address the other side no longer has (`_moved`, a known gap)."""
    window: list[Edit] = []
    for edit in [*schedule, None]:
        if edit is not None and edit.paused:
            window.append(edit)
            continue
        for contact in {e.contact for e in window}:
            ours = [e for e in window if e.contact == contact]
            if any(e.field == "email" for e in ours) and len({e.side for e in ours}) == 2:
                return True
        window = []
    return False


contacts_ = st.integers(0, CONTACTS - 1)
sides = st.sampled_from(["ap", "mc"])
fields_ = st.sampled_from(["first", "first", "last", "email"])
paused_ = st.sampled_from([False, False, False, True])
single = st.builds(
    _edit,
    contacts_,
    sides,
    fields_,
    st.sampled_from([0, 100, 400, 1200]),
    paused=paused_,
    on_landing=st.sampled_from([False, False, True]),
)
# The same field edited on both sides within one second.
same_second_pair = st.builds(
    lambda c, f, side, gap, p: [_edit(c, side, f, 0, paused=p), _edit(c, _other(side), f, gap, paused=p)],
    contacts_,
    fields_,
    sides,
    st.sampled_from([0, 100, 400]),
    paused_,
)
# Several edits of one contact at once, on either side.
burst = st.builds(
    lambda c, edits, paused: [_edit(c, side, f, 0, paused=paused) for side, f in edits],
    contacts_,
    st.lists(st.tuples(sides, fields_), min_size=2, max_size=3),
    paused_,
)
schedules = (
    st.lists(st.one_of(single.map(lambda e: [e]), same_second_pair, burst), min_size=1, max_size=3)
    .map(lambda groups: [e for group in groups for e in group][:6])
    .filter(lambda schedule: not _paused_across_a_move(schedule))
)


def _other(side: str) -> str:
    return "mc" if side == "ap" else "ap"


@pytest.fixture(scope="module")
def world(kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp: Path = tmp_path_factory.mktemp("convergence")
    # The poller is accessplanit's safety net for missed webhooks; here webhooks are the way in, and a poll in the
    # middle of a schedule would make the late-webhook example (a known gap) pass by chance.
    with running_stack(kafka_bootstrap, redis_url, tmp, extra_env={"TANDEM_INGEST_POLL_INTERVAL_S": "3600"}) as stack:
        *contacts, probe = asyncio.run(_create_contacts(stack, CONTACTS + 1))
        yield World(stack, contacts, probe)


async def _create_contacts(stack: RunningStack, count: int) -> list[Contact]:
    contacts = []
    async with httpx.AsyncClient(timeout=10, limits=IDLE_BELOW_SERVERS) as client:
        for n in range(count):
            email = f"conv{n}.{uuid.uuid4().hex[:8]}@example.com"
            values = {"first": "Start", "last": f"Contact{n}", "email": email}
            created = await client.post(
                f"{stack.url('accessplanit_sim')}/api/v2/User",
                headers=ADMIN,
                json={"Forenames": values["first"], "Surname": values["last"], "Email": email, "MainCompanyID": "2"},
            )
            assert created.status_code in (200, 201), created.text
            contacts.append(Contact(str(created.json()["ID"]), values, [email]))
            url = f"{stack.url('mailchimp_sim')}/3.0/lists/{DEMO_MAILCHIMP_AUDIENCE}/members/{subscriber_hash(email)}"

            async def synced(url: str = url) -> bool:
                return (await client.get(url, auth=MC_AUTH)).status_code == 200

            await eventually(synced, timeout=60)
    await wait_quiescent(stack)
    return contacts


async def _story(world: World, contact: Contact) -> str:
    """What Tandem did for the contact, in trace order: the counter-example's explanation."""
    addresses = {a.lower() for a in contact.addresses}

    def ours(record: TraceRecord) -> bool:
        return record.instance_id == world.stack.instance.id and (
            (record.contact_email or "").lower() in addresses or record.accessplanit_user_id == contact.user_id
        )

    records = sorted(await read_all(world.stack.kafka, TRACE, TraceRecord, where=ours), key=lambda r: r.finished_at)
    return "\n".join(
        f"{r.finished_at:%H:%M:%S.%f} {r.stage.value} {r.flow.value if r.flow else ''} {r.status.value}: {r.summary} "
        f"{[line.message for line in r.logs]} in={r.output.data_in}"
        for r in records
    )


class Sides:
    """The vendors' APIs as the people and API clients of the schedule use them."""

    def __init__(self, world: World, client: httpx.AsyncClient) -> None:
        self.world = world
        self.client = client

    async def member(self, contact: Contact) -> dict[str, Any] | None:
        """The contact's Mailchimp member, found at the latest of its addresses that holds one."""
        for address in reversed(contact.addresses):
            response = await self.client.get(self.world.member_url(address), auth=MC_AUTH)
            if response.status_code == 200:
                member: dict[str, Any] = response.json()
                return member
        return None

    async def user(self, contact: Contact) -> dict[str, Any]:
        response = await self.client.get(self.world.user_url(contact), headers=ADMIN)
        assert response.status_code == 200, response.text
        user: dict[str, Any] = response.json()
        return user

    async def value(self, contact: Contact, side: str, fld: str) -> str | None:
        ap_field, merge_field = FIELDS[fld]
        if side == "ap":
            return str((await self.user(contact))[ap_field])
        member = await self.member(contact)
        if member is None:
            return None
        return str(member["merge_fields"][merge_field] if merge_field else member["email_address"])

    async def accessplanit_webhooks(self, *, failing: bool) -> None:
        """accessplanit's deliveries fail (and are retried: every 0.2 s while failing, the default schedule after)."""
        retries = [0.2] * 300 if failing else [1.0, 2.0, 4.0, 8.0, 16.0]
        response = await self.client.post(
            f"{self.world.stack.url('accessplanit_sim')}/_sim/controls",
            json={"webhooks_failing": failing, "webhook_retry_delays": retries},
        )
        assert response.status_code == 200, response.text

    async def edit(self, contact: Contact, side: str, fld: str, value: str) -> None:
        ap_field, merge_field = FIELDS[fld]
        if side == "ap":
            response = await self.client.put(self.world.user_url(contact), headers=ADMIN, json={ap_field: value})
            assert response.status_code == 200, response.text
            return
        body: dict[str, Any] = {"merge_fields": {merge_field: value}} if merge_field else {"email_address": value}
        # The member's address may be moving under the client (Tandem writing an accessplanit email change): it
        # edits the member where it finds it, as a script reading the member first would.
        for _ in range(20):
            member = await self.member(contact)
            assert member is not None, f"no Mailchimp member at any of {contact.addresses}"
            response = await self.client.patch(self.world.member_url(member["email_address"]), auth=MC_AUTH, json=body)
            if response.status_code != 404:
                assert response.status_code == 200, response.text
                return
        raise AssertionError(f"the member of {contact.addresses} kept moving")


class Pause:
    """Pauses and resumes the stack's instance as `tandem instances pause/resume` does (a new version in the
    instance store), and sees that the mapper follows a pause before the schedule edits under it."""

    def __init__(self, world: World, sides: Sides) -> None:
        self.world = world
        self.sides = sides
        self.probes = 0

    async def _set(self, paused: bool) -> None:
        connection = connect(self.world.stack.kafka)
        current = (await read_instances(connection))[self.world.stack.instance.id]
        assert current.paused != paused
        await put_instance(connection, current.model_copy(update={"paused": paused, "version": current.version + 1}))

    async def pause(self) -> None:
        # What was made before is not held: held with the paused edits, an edit of an address that a held email
        # change moves would race the move (`_moved`).
        await wait_quiescent(self.world.stack)
        since = await _trace_ends(self.world.stack.kafka)
        await self._set(True)
        self.probes += 1
        await self.sides.edit(self.world.probe, "ap", "first", f"Probe{self.probes}")
        await _wait_held(self.world, since)

    async def resume(self) -> None:
        # Everything made while paused has reached the mapper (and is held) before the instance resumes.
        await wait_quiescent(self.world.stack, paused=True)
        await self._set(False)
        # The release reads accessplanit before it writes an older held value there (RELEASE_OVER_AN_EDIT); an edit
        # made between that read and the write is still lost when Tandem reads the user back only after the write
        # (a known gap): the schedule goes on once the release is done.
        await wait_quiescent(self.world.stack)


async def _trace_ends(bootstrap: str) -> dict[TopicPartition, int]:
    partitions = await partitions_of(connect(bootstrap), TRACE)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        return dict(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def _wait_held(world: World, since: dict[TopicPartition, int], timeout: float = 60.0) -> None:
    """Until the mapper traces the probe's change as held: it follows the pause."""
    consumer = AIOKafkaConsumer(bootstrap_servers=world.stack.kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(since))
        for partition, offset in since.items():
            consumer.seek(partition, offset)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    trace = TraceRecord.model_validate_json(record.value or b"")
                    if (
                        trace.instance_id == world.stack.instance.id
                        and trace.stage is Stage.MAPPER
                        and trace.accessplanit_user_id == world.probe.user_id
                    ):
                        assert trace.status is TraceStatus.HELD, f"the mapper did not hold the probe: {trace}"
                        return
        raise AssertionError(f"the mapper traced no change of the probe within {timeout:.0f}s")
    finally:
        await consumer.stop()


async def _run(world: World, schedule: list[Edit]) -> None:
    tag = uuid.uuid4().hex[:6]
    made: list[Made] = []
    async with httpx.AsyncClient(timeout=10, limits=IDLE_BELOW_SERVERS) as client:
        sides = Sides(world, client)
        pause = Pause(world, sides)
        paused = False
        for n, edit in enumerate(schedule):
            if edit.paused != paused:
                await (pause.pause() if edit.paused else pause.resume())
                paused = edit.paused
            await asyncio.sleep(edit.gap_ms / 1000)  # the schedule's own pacing, not a wait for Tandem
            contact = world.contacts[edit.contact]
            if not (paused or edit.racing):
                await _moved(world, sides, contact, edit, made)
            follows = await _landed(sides, contact, edit, made) if edit.on_landing and not paused else frozenset()
            value = f"n{tag}{n}.conv{edit.contact}@example.com" if edit.field == "email" else f"N{tag}{n}"
            if edit.late_webhook:
                await sides.accessplanit_webhooks(failing=True)
            started = time.time()
            await sides.edit(contact, edit.side, edit.field, value)
            made.append(Made(edit, value, started, time.time(), follows))
            if edit.field == "email":
                contact.addresses.append(value)
        if paused:
            await pause.resume()
        await wait_quiescent(world.stack)
        if any(edit.late_webhook for edit in schedule):
            await sides.accessplanit_webhooks(failing=False)
            await wait_quiescent(world.stack)

        for index, contact in enumerate(world.contacts):
            await _check(sides, world, index, contact, made)


async def _landed(sides: Sides, contact: Contact, edit: Edit, made: list[Made]) -> frozenset[str]:
    """Waits (briefly) for Tandem's write of the field's previous edit, made on the other side, to land on this
    edit's side; returns that value when it did. A previous edit that lost to an older-stamped one never lands."""
    previous = next((m for m in reversed(made) if (m.edit.contact, m.edit.field) == (edit.contact, edit.field)), None)
    if previous is None or previous.edit.side == edit.side:
        return frozenset()

    async def there() -> bool:
        return await sides.value(contact, edit.side, edit.field) == previous.value

    try:
        await eventually(there, timeout=10, interval=0.05)
    except AssertionError:
        return frozenset()
    return frozenset({previous.value})


async def _moved(world: World, sides: Sides, contact: Contact, edit: Edit, made: list[Made]) -> None:
    """Keeps email changes apart from the contact's edits on the other side: an edit in flight when the address
    changes on the other side, or made at the old address while the move is on its way, is proven by the `racing`
    examples (docs/convergence.md, "Moves"), not by generated schedules, whose behaviour is kept as it was. So an
    email change waits for quiescence, and an edit on the other side for the move to reach it (briefly)."""
    if edit.field == "email":
        await wait_quiescent(world.stack)
    previous = next((m for m in reversed(made) if (m.edit.contact, m.edit.field) == (edit.contact, "email")), None)
    if previous is None or previous.edit.side == edit.side:
        return

    async def there() -> bool:
        return (await sides.value(contact, edit.side, "email") or "").lower() == previous.value.lower()

    with contextlib.suppress(AssertionError):  # the change lost to a later one: nothing to wait for
        await eventually(there, timeout=10, interval=0.05)


def _must_lose(final: Made | None, other: Made) -> bool:
    """Whether the documented ordering makes `final`'s value lose to `other` (docs/convergence.md)."""
    if final is None:  # the value from before the schedule: every edit of the field is later
        return True
    if other.started > final.ended + UNCERTAINTY_S:
        return True  # provably later, whatever the clocks
    if final.edit.side == other.edit.side == "ap" and other.started > final.ended:
        return True  # accessplanit's clock has milliseconds
    return final.value in other.follows  # made after Tandem wrote `final` there: received later


async def _check(sides: Sides, world: World, index: int, contact: Contact, made: list[Made]) -> None:
    ours = [m for m in made if m.edit.contact == index]
    user = await sides.user(contact)
    member = await sides.member(contact)
    held = {
        "ap": {fld: str(user[ap_field]) for fld, (ap_field, _) in FIELDS.items()},
        "mc": None
        if member is None
        else {
            fld: str(member["merge_fields"][merge] if merge else member["email_address"])
            for fld, (_, merge) in FIELDS.items()
        },
    }

    async def explain(problem: str) -> AssertionError:
        story = await _story(world, contact)
        return AssertionError(f"contact {index}: {problem}; held {held}; edits {ours}; trace:\n{story}")

    if held["mc"] is None or {k: v.lower() for k, v in held["ap"].items()} != {
        k: v.lower() for k, v in held["mc"].items()
    }:
        raise await explain("the sides diverged")
    for fld in FIELDS:
        edits = [m for m in ours if m.edit.field == fld]
        final_value = held["ap"][fld]
        if not edits:
            if final_value.lower() != contact.values[fld].lower():
                raise await explain(f"{fld} changed to {final_value!r} without an edit")
            continue
        final = next((m for m in edits if m.value.lower() == final_value.lower()), None)
        if final is None and final_value.lower() != contact.values[fld].lower():
            raise await explain(f"{fld} ended on {final_value!r}, none of its values")
        later = [m for m in edits if m is not final and _must_lose(final, m)]
        if later:
            raise await explain(f"{fld} ended on {final_value!r}, which loses to {[m.value for m in later]}")
    for address in contact.addresses:
        if address.lower() != held["ap"]["email"].lower():
            left = await sides.client.get(world.member_url(address), auth=MC_AUTH)
            if left.status_code != 404:
                raise await explain(f"a member is left at {address}, an address the contact moved from")
    contact.values = dict(held["ap"])
    contact.addresses = [held["ap"]["email"]]


budget = ShrinkBudget()
# Email changes racing an edit of the same contact on the other side, found as gaps and fixed by the forward pointer
# a move leaves and the user id kept in accessplanit's state (docs/convergence.md, "Moves"). Both sides change the
# address at once (two members were left, the sides apart; now the change received later wins on both sides):
BOTH_SIDES_MOVE = [_edit(0, "ap", "email", 0), _edit(0, "mc", "email", 0, racing=True)]
# A Mailchimp edit at the old address while Tandem moves the member, and an accessplanit email change while a
# Mailchimp edit is on its way (the edit's change named an address no accessplanit user had any more: lost):
EDIT_AT_THE_OLD_ADDRESS = [_edit(0, "ap", "email", 0), _edit(0, "mc", "last", 0, racing=True)]
MOVE_UNDER_AN_EDIT = [_edit(0, "mc", "last", 0), _edit(0, "ap", "email", 0, racing=True)]
# Mailchimp's address change and then its names, while paused (the profile changes, keyed by the new address, may
# be released before the upemail: a second user was created there), found by a random run; fixed by the wait for a
# move of a create from a profile change (docs/convergence.md, "Moves").
PROFILE_BEFORE_ITS_MOVE = [
    _edit(0, "mc", "email", 0, paused=True),
    _edit(0, "mc", "first", 0, paused=True),
    _edit(0, "mc", "last", 0, paused=True),
    _edit(0, "ap", "first", 0),
]
# An accessplanit edit, later than a held Mailchimp one, whose webhook comes after the release of the older value:
# found as a gap (the release wrote over the edit, whose read-back then looked like Tandem's own write), fixed by
# the release's check of its accessplanit target (docs/convergence.md).
RELEASE_OVER_AN_EDIT = [
    _edit(0, "mc", "first", 0, paused=True),
    _edit(0, "ap", "first", 1200, paused=True, late_webhook=True),
]


@pytest.mark.timeout(900)
@settings(
    max_examples=10,
    deadline=None,
    phases=(Phase.explicit, Phase.generate, Phase.shrink),
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
    # The same generated schedules every run, so a landing's CI is repeatable. TANDEM_PROPERTY_RANDOM=1 explores
    # new ones (pytest --hypothesis-seed=N repeats a run).
    derandomize=os.environ.get("TANDEM_PROPERTY_RANDOM") != "1",
)
@example(schedule=[_edit(1, "ap", "first", 0), _edit(1, "mc", "first", 100), _edit(0, "ap", "first", 400)])
@example(schedule=[_edit(1, "mc", "first", 100), _edit(1, "ap", "first", 0), _edit(1, "ap", "first", 0)])
@example(schedule=[_edit(0, "mc", "last", 0), _edit(0, "ap", "first", 0), _edit(0, "mc", "email", 0)])
@example(schedule=BOTH_SIDES_MOVE)
@example(schedule=EDIT_AT_THE_OLD_ADDRESS)
@example(schedule=MOVE_UNDER_AN_EDIT)
@example(schedule=RELEASE_OVER_AN_EDIT)
@example(schedule=PROFILE_BEFORE_ITS_MOVE)
@given(schedule=schedules)
def test_both_sides_converge_on_the_latest_edit(world: World, schedule: list[Edit]) -> None:
    budget.admit(schedule)
    if world.dirty:
        world.contacts = asyncio.run(_create_contacts(world.stack, CONTACTS))
        world.dirty = False
    try:
        asyncio.run(_run(world, schedule))
    except Exception:
        world.dirty = True
        budget.failed(schedule)
        raise
