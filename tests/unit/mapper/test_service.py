"""The mapper service on in-memory Kafka and state: what a batch of changes leads to, without a broker or Redis.

The real-broker tests (`tests/integration/mapper`) prove delivery; these pin the service's decisions, the order
in which it applies them and what it leaves when Kafka refuses a record.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fakes.producer import InMemoryProducer
from fakes.state import InMemoryStateStore
from support.mapper import PERSON, accessplanit_change, mailchimp_change
from support.waiting import eventually
from tandem_mapper.held import HeldChanges
from tandem_mapper.service import Mapper
from tandem_mapper.settings import MapperSettings
from tandem_shared.contracts import ChangeEvent, ChangeKind, InstanceConfig, Operation, System, TraceRecord, TraceStatus
from tandem_shared.contracts.topics import COMMANDS
from tandem_shared.instances import StaticInstanceRegistry, demo_instance
from tandem_shared.redis.keys import user_email_key
from tandem_shared.sync.rules import field_digest, ts_ms

T0 = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)


def instance(prefix: str, **changes: Any) -> InstanceConfig:
    return demo_instance().model_copy(update={"id": f"{prefix}-{uuid.uuid4().hex[:8]}", **changes})


def make_mapper(
    registry: StaticInstanceRegistry,
    producer: InMemoryProducer | None = None,
    state: InMemoryStateStore | None = None,
) -> tuple[Mapper, InMemoryProducer, InMemoryStateStore]:
    published = producer or InMemoryProducer()
    state = state or InMemoryStateStore(now_ms=ts_ms(T0))
    settings = MapperSettings(REDIS_URL="redis://127.0.0.1:9/0", held_sweep_s=0.05)
    return Mapper(published, settings, registry, state), published, state


async def _resume_until_sent(
    mapper: Mapper, registry: StaticInstanceRegistry, paused: InstanceConfig, published: InMemoryProducer
) -> None:
    """Resumes the paused instance (a new version) and runs the mapper until the release has sent a command."""
    await mapper.start()
    try:
        await registry.put(paused.model_copy(update={"version": 2, "paused": False}))

        async def sent() -> bool:
            return bool(published.commands)

        await eventually(sent, timeout=10, interval=0.01)
    finally:
        await mapper.stop()


def trace_of(published: InMemoryProducer, event: ChangeEvent) -> list[TraceRecord]:
    return [r for r in published.traces if r.execution_id == event.execution_id]


async def test_a_new_contact_is_mapped_to_a_command_and_traced() -> None:
    config = instance("create")
    mapper, published, state = make_mapper(StaticInstanceRegistry([config]))
    event = accessplanit_change(config.id, "7", at=T0, Surname="Lovelace")

    await mapper.on_changes([event])

    [command] = published.commands
    assert (command.target, command.operation, command.event_id) == (System.MAILCHIMP, Operation.UPSERT, event.event_id)
    assert command.payload["email_address"] == "user7@example.com"
    assert command.payload["merge_fields"] == {"FNAME": "Ada", "LNAME": "Lovelace"}
    [record] = trace_of(published, event)
    assert (record.status, record.summary) == (
        TraceStatus.SUCCEEDED,
        "Mapped to a Mailchimp upsert of user7@example.com (FNAME, LNAME)",
    )
    assert record.output.data_out == command.payload
    # The deliveries were waited for together, not one by one.
    assert published.awaited_one_by_one == 0
    # What accessplanit holds is known now, and the write about to happen is noted on Mailchimp's side.
    source = state.raw(config.id, System.ACCESSPLANIT, "user7@example.com")
    assert source["f:Surname"].startswith(f"{field_digest('Lovelace')}|{ts_ms(T0)}|seen")
    target = state.raw(config.id, System.MAILCHIMP, "user7@example.com")
    assert f"r:LNAME|{field_digest('Lovelace')}" in target
    assert state.hashes[user_email_key(config.id)] == {"7": "user7@example.com"}


async def test_the_trace_keeps_mapped_fields_only() -> None:
    config = instance("minimise")
    mapper, published, _ = make_mapper(StaticInstanceRegistry([config]))
    event = accessplanit_change(config.id, "7", at=T0, Surname="Lovelace", DOB="1815-12-10T00:00:00", Mobile="07")

    await mapper.on_changes([event])

    [record] = trace_of(published, event)
    assert record.output.data_in is not None
    assert "DOB" not in record.output.data_in and "Mobile" not in record.output.data_in
    assert record.output.data_in["Surname"] == "Lovelace"
    assert record.output.data_in["_not_mapped"].endswith("fields not mapped")


async def test_the_echo_of_tandems_own_write_is_not_sent_back() -> None:
    config = instance("echo")
    mapper, published, state = make_mapper(StaticInstanceRegistry([config]))
    await mapper.on_changes([accessplanit_change(config.id, "7", at=T0, Surname="Lovelace")])
    [command] = published.commands
    await state.record_written(command)  # the writer's success hook

    echo = mailchimp_change(config.id, "user7@example.com", at=T0 + timedelta(seconds=5), FNAME="Ada", LNAME="Lovelace")
    await mapper.on_changes([echo])

    assert published.commands == [command]
    [record] = trace_of(published, echo)
    assert (record.status, record.summary) == (
        TraceStatus.SKIPPED,
        "Echo of Tandem's own write to Mailchimp: not sent back",
    )


async def test_a_paused_instances_changes_are_held_and_released_in_order_on_resume() -> None:
    paused = instance("paused", paused=True)
    registry = StaticInstanceRegistry([paused])
    mapper, published, state = make_mapper(registry)
    surnames = ["Byron", "King", "Lovelace-King"]
    held = [
        accessplanit_change(paused.id, "9", at=T0 + timedelta(seconds=i), Surname=name)
        for i, name in enumerate(surnames)
    ]

    await mapper.on_changes(held)

    assert published.commands == []
    for event in held:
        [record] = trace_of(published, event)
        assert (record.status, record.summary) == (
            TraceStatus.HELD,
            "Held: the instance is paused; processed in order on resume",
        )
    assert [h.event.event_id for h in await HeldChanges(state.held).oldest(paused.id)] == [e.event_id for e in held]

    await mapper.start()
    try:
        await registry.put(paused.model_copy(update={"version": 2, "paused": False}))

        # Done means published and taken off the backlog: stopping between the two would release it again.
        async def released() -> list[str] | None:
            names = [c.payload["merge_fields"]["LNAME"] for c in published.commands]
            done = len(names) == len(surnames) and await state.held.backlog(paused.id) == 0
            return names if done else None

        assert await eventually(released, timeout=10, interval=0.01) == surnames
    finally:
        await mapper.stop()
    assert await state.held.backlog(paused.id) == 0
    assert state.held.leases == {}  # the release lock was given back


async def test_a_change_of_an_unknown_instance_is_skipped() -> None:
    mapper, published, state = make_mapper(StaticInstanceRegistry([]))
    event = accessplanit_change("nowhere", "7", at=T0)

    await mapper.on_changes([event])

    assert published.commands == []
    [record] = trace_of(published, event)
    assert (record.status, record.summary) == (TraceStatus.SKIPPED, "Unknown instance nowhere")
    assert state.hashes == {}
    assert state.held.streams == {}


async def test_two_changes_of_one_contact_in_a_batch_are_decided_in_order() -> None:
    config = instance("order")
    mapper, published, state = make_mapper(StaticInstanceRegistry([config]))
    first = accessplanit_change(config.id, "7", at=T0, Email="ada@old.example", Surname="Byron")
    # Only the first change's state tells that this one moves the contact: it is decided after it.
    second = accessplanit_change(config.id, "7", at=T0 + timedelta(seconds=1), Email="ada@new.example", Surname="King")

    await mapper.on_changes([first, second])

    assert [(c.operation, c.payload["email_address"], c.identity.old_email) for c in published.commands] == [
        (Operation.UPSERT, "ada@old.example", None),
        (Operation.CHANGE_EMAIL, "ada@new.example", "ada@old.example"),
    ]
    assert [c.payload["merge_fields"]["LNAME"] for c in published.commands] == ["Byron", "King"]
    # accessplanit's state moved with the contact and holds the later surname.
    assert state.raw(config.id, System.ACCESSPLANIT, "ada@old.example") == {}
    moved = state.raw(config.id, System.ACCESSPLANIT, "ada@new.example")
    assert moved["f:Surname"].startswith(field_digest("King"))
    assert state.hashes[user_email_key(config.id)] == {"7": "ada@new.example"}


async def test_a_batch_whose_command_kafka_refuses_raises_and_leaves_the_state_unwritten() -> None:
    config = instance("refused")
    registry = StaticInstanceRegistry([config])
    mapper, published, state = make_mapper(registry, InMemoryProducer(refused_topics=frozenset({COMMANDS})))
    event = accessplanit_change(config.id, "7", at=T0, updated_by=PERSON, Surname="Lovelace")

    with pytest.raises(ConnectionError, match="refused"):
        await mapper.on_changes([event])

    # Only the note of the write about to be sent was written (it precedes the command); what accessplanit holds
    # is not known yet, so the batch decided again sends the same command.
    assert state.raw(config.id, System.ACCESSPLANIT, "user7@example.com") == {}
    assert user_email_key(config.id) not in state.hashes
    [refused] = published.commands

    again, republished, _ = make_mapper(registry, state=state)  # the same store, a producer that delivers
    await again.on_changes([event])
    [command] = republished.commands
    assert command.idempotency_key == refused.idempotency_key
    assert state.raw(config.id, System.ACCESSPLANIT, "user7@example.com") != {}


async def test_a_batch_whose_state_write_fails_is_decided_the_same_way_again() -> None:
    config = instance("state-away")
    mapper, published, state = make_mapper(StaticInstanceRegistry([config]))
    event = accessplanit_change(config.id, "7", at=T0, Surname="Lovelace")
    state.fail_on = {2}  # the note of the write goes; then the round's state does not

    with pytest.raises(ConnectionError, match="away"):
        await mapper.on_changes([event])
    assert state.raw(config.id, System.ACCESSPLANIT, "user7@example.com") == {}
    assert user_email_key(config.id) not in state.hashes

    await mapper.on_changes([event])  # the same records, fetched again
    first, second = published.commands
    assert first.idempotency_key == second.idempotency_key  # the writer applies it once
    assert state.raw(config.id, System.ACCESSPLANIT, "user7@example.com") != {}


async def test_a_change_arriving_behind_a_backlog_is_held_behind_it() -> None:
    resumed = instance("backlog", paused=True)
    registry = StaticInstanceRegistry([resumed])
    mapper, published, state = make_mapper(registry)
    await mapper.on_changes([accessplanit_change(resumed.id, "9", at=T0, Surname="Byron")])
    # Resumed while this replica is not releasing yet: what arrives now queues behind what was held.
    await registry.put(resumed.model_copy(update={"version": 2, "paused": False}))

    later = [
        accessplanit_change(resumed.id, "9", at=T0 + timedelta(seconds=i), Surname=name)
        for i, name in enumerate(["King", "Lovelace-King"], start=1)
    ]
    await mapper.on_changes(later)

    assert published.commands == []
    assert [(r.status, r.summary) for e in later for r in trace_of(published, e)] == [
        (TraceStatus.HELD, "Held behind 1 earlier change(s) being released in order"),
        (TraceStatus.HELD, "Held behind 2 earlier change(s) being released in order"),
    ]
    assert await state.held.backlog(resumed.id) == 3


async def test_a_resume_with_discard_drops_what_was_held_while_paused_and_traces_it() -> None:
    paused = instance("discard", paused=True)
    registry = StaticInstanceRegistry([paused])
    mapper, published, state = make_mapper(registry)
    event = accessplanit_change(paused.id, "9", at=T0, Surname="Byron")
    await mapper.on_changes([event])

    await mapper.start()
    try:
        await registry.put(paused.model_copy(update={"version": 2, "paused": False, "discard_held_on_resume": True}))

        async def discarded() -> list[TraceRecord] | None:
            return [r for r in trace_of(published, event) if r.status is TraceStatus.DISCARDED] or None

        [record] = await eventually(discarded, timeout=10, interval=0.01)
    finally:
        await mapper.stop()
    assert record.summary == "Discarded on resume (--discard-buffered): held while paused, never synced"
    assert published.commands == []
    assert await state.held.backlog(paused.id) == 0


async def test_a_held_change_released_to_accessplanit_is_checked_there_first_and_a_live_one_is_not() -> None:
    paused = instance("release-check", paused=True)
    registry = StaticInstanceRegistry([paused])
    mapper, published, _ = make_mapper(registry)
    # A new member (a subscribe): a profile change creating a user waits for a move instead (the next test).
    held = mailchimp_change(paused.id, "ada@example.com", at=T0, kind=ChangeKind.CREATED, FNAME="Grace", LNAME="Hopper")
    await mapper.on_changes([held])

    await _resume_until_sent(mapper, registry, paused, published)
    [command] = published.commands
    assert command.source_check is not None
    assert (command.source_check.system, command.source_check.held_change_ms) == (System.ACCESSPLANIT, ts_ms(T0))

    await mapper.on_changes([mailchimp_change(paused.id, "ada@example.com", at=T0 + timedelta(seconds=5), FNAME="Lin")])
    assert published.commands[-1].payload["Forenames"] == "Lin"
    assert published.commands[-1].source_check is None


async def test_a_held_profile_change_that_may_precede_a_move_is_released_without_the_check() -> None:
    """Tandem knows no contact at its address: the check would take a user moved there meanwhile (by the address
    change it may have overtaken) for someone's later edit. The writer judges the user it finds when it writes."""
    paused = instance("release-move", paused=True)
    registry = StaticInstanceRegistry([paused])
    mapper, published, _ = make_mapper(registry)
    await mapper.on_changes([mailchimp_change(paused.id, "new@example.com", at=T0, FNAME="Grace", LNAME="Hopper")])

    await _resume_until_sent(mapper, registry, paused, published)
    [command] = published.commands
    assert command.may_precede_move
    assert command.source_check is None
