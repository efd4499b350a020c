"""The mapper on the real broker and Redis: live configuration, pause without loss, and no ping-pong."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from support.mapper import INTEGRATION_USER, PERSON, MapperHarness, accessplanit_change, mailchimp_change
from support.mapper import mapper_test_instance as make_instance
from support.waiting import eventually
from tandem_shared.contracts import (
    ChangeKind,
    FieldMapping,
    Operation,
    System,
    TraceStatus,
    Transform,
    utcnow,
)

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_a_configuration_change_applies_live_without_a_restart(harness: MapperHarness) -> None:
    without_phone = [m for m in make_instance("any").mappings if m.mailchimp != "PHONE"]
    config = await harness.put(make_instance(unique("live"), mappings=without_phone))
    first = await harness.change(accessplanit_change(config.id, "101", at=T0, Phone="0161 496 0000"))
    [record] = await harness.mapper_records([first.execution_id])
    assert record.status is TraceStatus.SUCCEEDED

    phone = FieldMapping(mailchimp="PHONE", accessplanit="Phone", transform=Transform.PHONE)
    await harness.put(config.model_copy(update={"version": 2, "mappings": [*config.mappings, phone]}))
    second = await harness.change(accessplanit_change(config.id, "102", at=T0, Phone="0161 496 0001"))
    await harness.mapper_records([second.execution_id])

    commands = {c.execution_id: c for c in await harness.commands(config.id)}
    assert "PHONE" not in commands[first.execution_id].payload["merge_fields"]
    assert commands[second.execution_id].payload["merge_fields"]["PHONE"] == "0161 496 0001"


async def test_a_paused_instance_holds_its_changes_and_processes_them_in_order_on_resume(
    harness: MapperHarness,
) -> None:
    config = await harness.put(make_instance(unique("pause")))
    other = await harness.put(make_instance(unique("other")))
    paused = await harness.put(config.model_copy(update={"version": 2, "paused": True}))

    surnames = ["Byron", "King", "Lovelace-King"]
    held = [
        await harness.change(accessplanit_change(config.id, "201", at=T0 + timedelta(seconds=i), Surname=name))
        for i, name in enumerate(surnames)
    ]
    held_records = await harness.mapper_records([e.execution_id for e in held])
    assert {r.status for r in held_records} == {TraceStatus.HELD}
    assert all("paused" in r.summary for r in held_records)

    # Another instance is never held up by a paused one.
    elsewhere = await harness.change(accessplanit_change(other.id, "202", at=T0))
    [other_record] = await harness.mapper_records([elsewhere.execution_id])
    assert other_record.status is TraceStatus.SUCCEEDED
    assert len(await harness.commands(other.id)) == 1
    assert await harness.commands(config.id) == []  # a paused instance writes nothing

    await harness.put(paused.model_copy(update={"version": 3, "paused": False}))

    async def released() -> list[str] | None:
        commands = await harness.commands(config.id)
        return [c.payload["merge_fields"]["LNAME"] for c in commands] if len(commands) == len(surnames) else None

    assert await eventually(released, timeout=60) == surnames
    records = await harness.mapper_records([e.execution_id for e in held])
    assert {r.execution_id for r in records if r.status is TraceStatus.SUCCEEDED} == {e.execution_id for e in held}


async def test_resume_with_discard_drops_what_was_held_and_traces_it(harness: MapperHarness) -> None:
    config = await harness.put(make_instance(unique("discard")))
    paused = await harness.put(config.model_copy(update={"version": 2, "paused": True}))
    held = [
        await harness.change(accessplanit_change(config.id, "301", at=T0 + timedelta(seconds=i), Surname=f"S{i}"))
        for i in range(2)
    ]
    await harness.mapper_records([e.execution_id for e in held])
    await harness.put(paused.model_copy(update={"version": 3, "paused": False, "discard_held_on_resume": True}))

    async def discarded() -> bool:
        records = await harness.mapper_records([e.execution_id for e in held])
        return sum(r.status is TraceStatus.DISCARDED for r in records) == len(held)

    await eventually(discarded, timeout=60)
    after = await harness.change(accessplanit_change(config.id, "301", at=T0 + timedelta(minutes=1), Surname="New"))
    await harness.mapper_records([after.execution_id])
    commands = await harness.commands(config.id)
    assert [c.execution_id for c in commands] == [after.execution_id]


async def test_an_accessplanit_edit_writes_mailchimp_once_and_its_echo_goes_no_further(
    harness: MapperHarness,
) -> None:
    config = await harness.put(make_instance(unique("ap2mc")))
    edit = await harness.change(accessplanit_change(config.id, "401", at=utcnow(), Forenames="Ada", Surname="Byron"))
    await harness.mapper_records([edit.execution_id])
    [command] = await harness.commands(config.id)
    assert command.target is System.MAILCHIMP
    await harness.state.record_written(command)  # the writer, after Mailchimp said 200

    # Mailchimp's profile webhook for that write, as ingest turns it into a change.
    email = command.payload["email_address"]
    echo = await harness.change(mailchimp_change(config.id, email, at=utcnow(), FNAME="Ada", LNAME="Byron"))
    [echo_record] = await harness.mapper_records([echo.execution_id])
    assert echo_record.status is TraceStatus.SKIPPED
    assert echo_record.summary == "Echo of Tandem's own write to Mailchimp: not sent back"
    assert echo_record.changes_detected is False
    assert [c.execution_id for c in await harness.commands(config.id)] == [edit.execution_id]

    # Someone else changes the contact in Mailchimp (another app, through the API): that still syncs.
    other = await harness.change(mailchimp_change(config.id, email, at=utcnow(), FNAME="Ada", LNAME="King"))
    await harness.mapper_records([other.execution_id])
    commands = {c.execution_id: c for c in await harness.commands(config.id)}
    assert set(commands) == {edit.execution_id, other.execution_id}
    assert commands[other.execution_id].target is System.ACCESSPLANIT
    assert commands[other.execution_id].payload == {"Email": email, "Surname": "King"}


async def test_a_mailchimp_edit_writes_accessplanit_once_and_its_echo_goes_no_further(
    harness: MapperHarness,
) -> None:
    config = await harness.put(make_instance(unique("mc2ap")))
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    edit = await harness.change(
        mailchimp_change(config.id, email, at=utcnow(), kind=ChangeKind.CREATED, FNAME="Grace", LNAME="Hopper")
    )
    await harness.mapper_records([edit.execution_id])
    [command] = await harness.commands(config.id)
    assert command.target is System.ACCESSPLANIT
    assert command.operation is Operation.UPSERT
    assert command.payload == {"Email": email, "Forenames": "Grace", "Surname": "Hopper"}
    await harness.state.record_written(command)  # the accessplanit writer, after the user was created

    # accessplanit's webhook for the user Tandem created, made by the integration user.
    echo = await harness.change(
        accessplanit_change(
            config.id,
            "501",
            at=utcnow(),
            updated_by=INTEGRATION_USER,
            kind=ChangeKind.CREATED,
            Email=email,
            Forenames="Grace",
            Surname="Hopper",
        )
    )
    [echo_record] = await harness.mapper_records([echo.execution_id])
    assert echo_record.status is TraceStatus.SKIPPED
    assert echo_record.summary == "Echo of Tandem's own write to accessplanit: not sent back"
    assert [c.execution_id for c in await harness.commands(config.id)] == [edit.execution_id]

    # A person edits the user through the API with their own key: that still syncs.
    person = await harness.change(
        accessplanit_change(
            config.id,
            "501",
            at=utcnow(),
            updated_by=PERSON,
            Email=email,
            Forenames="Grace",
            Surname="Murray Hopper",
        )
    )
    await harness.mapper_records([person.execution_id])
    commands = {c.execution_id: c for c in await harness.commands(config.id)}
    assert set(commands) == {edit.execution_id, person.execution_id}
    assert commands[person.execution_id].target is System.MAILCHIMP
    assert commands[person.execution_id].payload["merge_fields"] == {"LNAME": "Murray Hopper"}


async def test_an_accessplanit_email_change_moves_the_mailchimp_contact(harness: MapperHarness) -> None:
    config = await harness.put(make_instance(unique("email")))
    first = await harness.change(accessplanit_change(config.id, "601", at=utcnow(), Email="ada@old.example"))
    await harness.mapper_records([first.execution_id])
    [created] = await harness.commands(config.id)
    await harness.state.record_written(created)

    moved = await harness.change(accessplanit_change(config.id, "601", at=utcnow(), Email="ada@new.example"))
    await harness.mapper_records([moved.execution_id])
    change = (await harness.commands(config.id))[-1]  # same user, same key: in order
    assert change.operation is Operation.CHANGE_EMAIL
    assert (change.identity.old_email, change.identity.email) == ("ada@old.example", "ada@new.example")
    await harness.state.record_written(change)

    # Mailchimp's upemail webhook for the change Tandem made is an echo.
    upemail = mailchimp_change(config.id, "ada@new.example", at=utcnow())
    upemail = upemail.model_copy(
        update={
            "kind": ChangeKind.EMAIL_CHANGED,
            "identity": upemail.identity.model_copy(update={"old_email": "ada@old.example"}),
            "fields": {},
        }
    )
    await harness.change(upemail)
    [record] = await harness.mapper_records([upemail.execution_id])
    assert record.summary == "Echo of Tandem's own write to Mailchimp: not sent back"
    assert len(await harness.commands(config.id)) == 2


async def test_an_echo_that_overtakes_the_writers_record_is_still_recognised(harness: MapperHarness) -> None:
    # Mailchimp's webhook can reach the mapper before the writer has recorded its write: the mapper noted the
    # values it sent when it sent them.
    config = await harness.put(make_instance(unique("race")))
    edit = await harness.change(accessplanit_change(config.id, "701", at=utcnow(), Surname="Byron"))
    await harness.mapper_records([edit.execution_id])
    [command] = await harness.commands(config.id)
    email = command.payload["email_address"]
    echo = await harness.change(mailchimp_change(config.id, email, at=utcnow(), FNAME="Ada", LNAME="Byron"))
    [record] = await harness.mapper_records([echo.execution_id])
    assert record.summary == "Echo of Tandem's own write to Mailchimp: not sent back"
    assert len(await harness.commands(config.id)) == 1
