"""Two people change the same contact close together, one in each system: the later change wins, in whichever
order their changes reach the mapper, and nothing ping-pongs.

The mapper runs its real code path with real Redis; Kafka is replaced by a list, and each vendor by a dict the
simulated writer applies commands to, unconditionally, as the vendors' APIs do (a write can land after a person's
later change and overwrite it). Each write is reported back by the target, as both vendors' webhooks do.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fakes.producer import InMemoryProducer
from tandem_mapper.service import Mapper
from tandem_mapper.settings import MapperSettings
from tandem_shared.contracts import (
    ChangeEvent,
    ChangeKind,
    ContactIdentity,
    InstanceConfig,
    SyncCommand,
    System,
    Trigger,
)
from tandem_shared.instances import StaticInstanceRegistry, demo_instance
from tandem_shared.redis.state import RedisStateStore
from tandem_shared.sync.rules import ts_ms

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
EMAIL = "ada@example.com"
USER_ID = "7"


class Captured(InMemoryProducer):
    """Stands in for Kafka: what the mapper publishes."""


@dataclass
class Side:
    values: dict[str, str]
    changed_at: datetime


@dataclass
class World:
    mapper: Mapper
    published: Captured
    instance: InstanceConfig
    state: RedisStateStore
    accessplanit: Side = field(default_factory=lambda: Side({"Forenames": "Ada", "Surname": "Lovelace"}, T0))
    mailchimp: Side = field(default_factory=lambda: Side({"FNAME": "Ada", "LNAME": "Lovelace"}, T0))
    clock: list[datetime] = field(default_factory=lambda: [T0])
    writes: int = 0
    echoes: list[ChangeEvent] = field(default_factory=list)

    def tick(self) -> datetime:
        self.clock[0] += timedelta(seconds=1)
        return self.clock[0]

    def accessplanit_event(self, at: datetime, updated_by: str) -> ChangeEvent:
        return event(
            self.instance.id, System.ACCESSPLANIT, {**self.accessplanit.values, "Email": EMAIL}, at, updated_by
        )

    def mailchimp_event(self, at: datetime) -> ChangeEvent:
        return event(self.instance.id, System.MAILCHIMP, {**self.mailchimp.values, "EMAIL": EMAIL}, at, None)

    async def deliver(self, change: ChangeEvent) -> None:
        """The mapper handles one change; any command is written at once, and the target reports it back."""
        before = len(self.published.commands)
        await self.mapper.on_change(change)
        for command in self.published.commands[before:]:
            await self.write(command)
        while self.echoes:
            await self.deliver(self.echoes.pop(0))

    async def write(self, command: SyncCommand) -> None:
        target = self.mailchimp if command.target is System.MAILCHIMP else self.accessplanit
        values = command.payload["merge_fields"] if command.target is System.MAILCHIMP else command.payload
        target.values.update({k: v for k, v in values.items() if k in target.values})
        target.changed_at = self.tick()
        self.writes += 1
        await self.state.record_written(command)
        if command.target is System.MAILCHIMP:
            self.echoes.append(self.mailchimp_event(target.changed_at))
        else:
            self.echoes.append(self.accessplanit_event(target.changed_at, "900001"))


def event(
    instance_id: str, source: System, fields: dict[str, Any], at: datetime, updated_by: str | None
) -> ChangeEvent:
    identity = (
        ContactIdentity(accessplanit_user_id=USER_ID, email=EMAIL)
        if source is System.ACCESSPLANIT
        else (ContactIdentity(email=EMAIL))
    )
    return ChangeEvent(
        event_id=uuid.uuid4().hex,
        execution_id=uuid.uuid4().hex,
        instance_id=instance_id,
        source=source,
        kind=ChangeKind.UPDATED,
        identity=identity,
        fields={**fields, "ID": USER_ID} if source is System.ACCESSPLANIT else fields,
        occurred_at=at,
        received_at=at,
        trigger=Trigger.WEBHOOK,
        updated_by_id=updated_by,
    )


@pytest.fixture
async def world(redis_url: str) -> AsyncIterator[World]:
    instance = demo_instance().model_copy(update={"id": f"conflict-{uuid.uuid4().hex[:8]}"})
    clock = [T0]  # the simulated writer's clock: when its writes land
    state = RedisStateStore.from_url(redis_url, clock=lambda: ts_ms(clock[0]))
    published = Captured()
    settings = MapperSettings(REDIS_URL=redis_url)
    mapper = Mapper(published, settings, StaticInstanceRegistry([instance]), state)
    running = World(mapper, published, instance, state, clock=clock)
    # The contact as both systems hold it after Tandem synced it once.
    await running.deliver(running.accessplanit_event(T0, "900002"))
    assert running.writes == 1
    yield running
    await state.close()


@pytest.mark.parametrize("accessplanit_first", [True, False], ids=["accessplanit-first", "mailchimp-first"])
async def test_the_later_change_wins_whichever_reaches_the_mapper_first(world: World, accessplanit_first: bool) -> None:
    # A person changes the surname in accessplanit at T1, another in Mailchimp a moment later at T2, both before
    # Tandem hears of either: whatever Tandem writes now lands after both.
    t1, t2 = T0 + timedelta(minutes=1), T0 + timedelta(minutes=1, seconds=1)
    world.clock[0] = T0 + timedelta(minutes=2)
    world.accessplanit.values["Surname"], world.accessplanit.changed_at = "Byron", t1
    world.mailchimp.values["LNAME"], world.mailchimp.changed_at = "King", t2
    changes = [world.accessplanit_event(t1, "900002"), world.mailchimp_event(t2)]
    writes_before = world.writes
    for change in changes if accessplanit_first else reversed(changes):
        await world.deliver(change)

    assert world.accessplanit.values["Surname"] == world.mailchimp.values["LNAME"] == "King"
    # Mailchimp first: one write (accessplanit takes King). accessplanit first: Byron reaches Mailchimp over King,
    # then King comes back to both sides. Either way nothing goes round again.
    assert world.writes - writes_before == (3 if accessplanit_first else 1)
    summaries = [t.summary for t in world.published.traces]
    assert any(s.startswith("Echo of Tandem's own write") for s in summaries)
    assert world.echoes == []
