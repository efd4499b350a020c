"""The mapper in this process, on the real broker and Redis, seeing only the instances a test publishes.

Changes are published straight to `tandem.changes` (as ingest would) and commands read back from
`tandem.commands`; a test plays the writer by calling `StateStore.record_written`, the writer's success hook.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from support.kafka import connect
from support.topics import read_all, wait_for_records
from support.waiting import eventually
from tandem_mapper.bootstrap import bootstrap
from tandem_mapper.entrypoint import subscribe
from tandem_mapper.service import Mapper
from tandem_mapper.settings import MapperSettings
from tandem_shared.contracts import (
    ChangeEvent,
    ChangeKind,
    ContactIdentity,
    InstanceConfig,
    Stage,
    SyncCommand,
    System,
    TraceRecord,
    Trigger,
)
from tandem_shared.contracts.envelopes import change_envelope
from tandem_shared.contracts.topics import CHANGES, COMMANDS, TRACE
from tandem_shared.instance_store import TopicInstanceRegistry, put_instance, remove_instance
from tandem_shared.instances import DeleteListener, Listener, demo_instance
from tandem_shared.kafka import KafkaProducer, partitions_of, send_envelope
from tandem_shared.redis.state import StateStore

INTEGRATION_USER = "900001"
PERSON = "900002"


class OnlyThese:
    """The topic's registry, narrowed to one test's instances (the topic holds every test's)."""

    def __init__(self, inner: TopicInstanceRegistry, ids: set[str]) -> None:
        self._inner = inner
        self._ids = ids

    def get(self, instance_id: str) -> InstanceConfig | None:
        return self._inner.get(instance_id) if instance_id in self._ids else None

    def all(self) -> list[InstanceConfig]:
        return [i for i in self._inner.all() if i.id in self._ids]

    def on_change(self, listener: Listener) -> None:
        def narrowed(old: InstanceConfig | None, new: InstanceConfig | None) -> Any:
            subject = new or old
            return listener(old, new) if subject is not None and subject.id in self._ids else None

        self._inner.on_change(narrowed)

    def on_delete(self, listener: DeleteListener) -> None:
        def narrowed(instance_id: str, at: datetime) -> Any:
            return listener(instance_id, at) if instance_id in self._ids else None

        self._inner.on_delete(narrowed)

    def deleted_at(self, instance_id: str) -> datetime | None:
        return self._inner.deleted_at(instance_id) if instance_id in self._ids else None

    async def start(self) -> None:
        await self._inner.start()

    async def stop(self) -> None:
        await self._inner.stop()


def mapper_test_instance(instance_id: str, **changes: Any) -> InstanceConfig:
    base = demo_instance()
    return base.model_copy(
        update={
            "id": instance_id,
            "name": f"mapper test {instance_id}",
            # Nothing in these tests writes to the vendors; the discard port makes sure nothing could.
            "mailchimp": base.mailchimp.model_copy(update={"api_base_url": "http://127.0.0.1:9/3.0"}),
            "accessplanit": base.accessplanit.model_copy(update={"base_url": "http://127.0.0.1:9"}),
            **changes,
        }
    )


@dataclass
class MapperHarness:
    kafka: str
    mapper: Mapper
    registry: TopicInstanceRegistry
    state: StateStore
    publisher: KafkaProducer
    ids: set[str]
    group_id: str
    instances: dict[str, InstanceConfig] = field(default_factory=dict)

    async def put(self, instance: InstanceConfig) -> InstanceConfig:
        """Publish a configuration and wait until the mapper follows it (as every service does, live)."""
        self.ids.add(instance.id)
        await put_instance(connect(self.kafka), instance)

        async def applied() -> bool:
            current = self.registry.get(instance.id)
            return current is not None and current.version == instance.version and current == instance

        await eventually(applied, timeout=30)
        self.instances[instance.id] = instance
        return instance

    async def change(self, event: ChangeEvent) -> ChangeEvent:
        await (await send_envelope(self.publisher, change_envelope(event)))
        return event

    async def mapper_records(self, execution_ids: list[str]) -> list[TraceRecord]:
        """Wait for the mapper's trace of each execution; returns them in execution order."""
        wanted = set(execution_ids)
        records = await wait_for_records(
            self.kafka,
            TRACE,
            TraceRecord,
            where=lambda r: r.stage is Stage.MAPPER and r.execution_id in wanted,
            until=lambda found: {r.execution_id for r in found} >= wanted,
        )
        return records

    async def commands(self, instance_id: str) -> list[SyncCommand]:
        return await read_all(self.kafka, COMMANDS, SyncCommand, where=lambda c: c.instance_id == instance_id)

    async def committed(self) -> dict[TopicPartition, int]:
        """The mapper group's committed offsets on `tandem.changes`."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.kafka)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(self.group_id)
        finally:
            await admin.close()
        return {tp: meta.offset for tp, meta in offsets.items() if tp.topic == CHANGES}

    async def end_offsets(self) -> dict[TopicPartition, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.kafka)
        await consumer.start()
        try:
            return dict(await consumer.end_offsets(await partitions_of(connect(self.kafka), CHANGES)))
        finally:
            await consumer.stop()


async def start_group_at_end(kafka: str, group_id: str, topic: str) -> None:
    """Commit the topic's current end for a new consumer group, so it reads only what is published from now on
    (the session's broker holds every earlier test's changes)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, group_id=group_id, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await partitions_of(connect(kafka), topic)
        consumer.assign(partitions)
        end = await consumer.end_offsets(partitions)
        await consumer.commit(end)
    finally:
        await consumer.stop()


@asynccontextmanager
async def running_mapper(
    kafka: str, redis: str, *, state: StateStore | None = None, **settings_: Any
) -> AsyncIterator[MapperHarness]:
    ids: set[str] = set()
    topic_registry = TopicInstanceRegistry(connect(kafka))
    settings = MapperSettings(
        KAFKA_BOOTSTRAP_SERVERS=kafka,
        REDIS_URL=redis,
        group_id=f"tandem-mapper-test-{uuid.uuid4().hex[:8]}",
        held_sweep_s=1.0,
        **settings_,
    )
    await start_group_at_end(kafka, settings.group_id, CHANGES)
    built = bootstrap(settings, registry=OnlyThese(topic_registry, ids), state=state)
    subscribe(built.broker, settings, built.mapper)
    state = built.state
    publisher = KafkaProducer(connect(kafka))
    await topic_registry.start()
    await built.producer.start()
    await built.broker.start()
    await built.mapper.start()
    await publisher.start()
    try:
        yield MapperHarness(kafka, built.mapper, topic_registry, state, publisher, ids, settings.group_id)
    finally:
        await publisher.stop()
        await built.mapper.stop()
        await built.broker.stop()
        await built.producer.stop()
        await topic_registry.stop()
        await state.close()
        # Later stacks in the session replay every change; gone instances make that replay cheap. Deleted as an
        # operator deletes one (`tandem instances delete`): its Redis state goes too.
        for instance_id in ids:
            await remove_instance(connect(kafka), redis, instance_id)


def new_id() -> str:
    return uuid.uuid4().hex


def accessplanit_change(
    instance_id: str,
    user_id: str,
    *,
    at: datetime,
    updated_by: str = PERSON,
    kind: ChangeKind = ChangeKind.UPDATED,
    **fields: Any,
) -> ChangeEvent:
    user = {
        "ID": user_id,
        "Forenames": "Ada",
        "Surname": "Lovelace",
        "Email": f"user{user_id}@example.com",
        "UpdatedByID": updated_by,
        "DateUpdated": at.isoformat(),
        **fields,
    }
    return ChangeEvent(
        event_id=new_id(),
        execution_id=new_id(),
        instance_id=instance_id,
        source=System.ACCESSPLANIT,
        kind=kind,
        identity=ContactIdentity(accessplanit_user_id=user_id, email=user["Email"]),
        fields=user,
        occurred_at=at,
        received_at=at,
        trigger=Trigger.WEBHOOK,
        updated_by_id=updated_by,
    )


def mailchimp_change(
    instance_id: str, email: str, *, at: datetime, kind: ChangeKind = ChangeKind.UPDATED, **merges: Any
) -> ChangeEvent:
    # Mailchimp reports every merge field of the audience, unset ones as "" (simulator: the demo audience).
    fields = {"EMAIL": email, "FNAME": "", "LNAME": "", "ADDRESS": "", "PHONE": "", "BIRTHDAY": "", "COMPANY": ""}
    fields.update(merges)
    return ChangeEvent(
        event_id=new_id(),
        execution_id=new_id(),
        instance_id=instance_id,
        source=System.MAILCHIMP,
        kind=kind,
        identity=ContactIdentity(email=email),
        fields=fields,
        occurred_at=at,
        received_at=at,
        trigger=Trigger.WEBHOOK,
    )
