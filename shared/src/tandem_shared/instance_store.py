"""Instance configurations on the compacted `tandem.instances` topic, keyed by instance id.

Every service materializes the topic at start (reads it to the end before it serves) and then follows it, so a
configuration change — a new mapping, a pause — applies within a second or two, without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pydantic import ValidationError

from tandem_shared.contracts import InstanceConfig
from tandem_shared.contracts.topics import INSTANCES
from tandem_shared.instances import Listener
from tandem_shared.kafka import caught_up, partitions_of
from tandem_shared.logging import get_logger

log = get_logger("tandem.instances")


class TopicInstanceRegistry:
    def __init__(self, bootstrap_servers: str, topic: str = INSTANCES) -> None:
        self._bootstrap = bootstrap_servers
        self._topic = topic
        self._configs: dict[str, InstanceConfig] = {}
        self._listeners: list[Listener] = []
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    def get(self, instance_id: str) -> InstanceConfig | None:
        return self._configs.get(instance_id)

    def all(self) -> list[InstanceConfig]:
        return list(self._configs.values())

    def on_change(self, listener: Listener) -> None:
        """`listener(old, new)` runs after each change; new is None when the instance was deleted."""
        self._listeners.append(listener)

    async def start(self) -> None:
        # "earliest": should the fetcher resolve a position before seek_to_beginning lands (an aiokafka race),
        # the topic is still read from its start.
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        await consumer.start()
        self._consumer = consumer
        partitions = await partitions_of(self._bootstrap, self._topic)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        while not await caught_up(consumer, end):
            await self._poll(timeout_ms=500)
        self._task = asyncio.create_task(self._follow(), name="instance-registry")
        log.info("instances loaded", count=len(self._configs))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    async def _follow(self) -> None:
        while True:
            try:
                await self._poll(timeout_ms=1000)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a broker hiccup must not stop config updates for good
                log.warning("instance topic poll failed; retrying", error=str(exc))
                await asyncio.sleep(1.0)

    async def _poll(self, timeout_ms: int) -> None:
        assert self._consumer is not None
        batches = await self._consumer.getmany(timeout_ms=timeout_ms)
        for records in batches.values():
            for record in records:
                await self._apply(record.key, record.value)

    async def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        instance_id = key.decode()
        old = self._configs.get(instance_id)
        new: InstanceConfig | None = None
        if value is not None:
            try:
                new = InstanceConfig.model_validate_json(value)
            except ValidationError as exc:
                log.error(
                    "invalid instance config on topic, keeping the previous one",
                    instance_id=instance_id,
                    error=str(exc),
                )
                return
            self._configs[instance_id] = new
        else:
            self._configs.pop(instance_id, None)
        self._changed.set()
        for listener in self._listeners:
            result = listener(old, new)
            if inspect.isawaitable(result):
                await result


async def _producer(bootstrap_servers: str) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", enable_idempotence=True)
    await producer.start()
    return producer


async def put_instance(bootstrap_servers: str, config: InstanceConfig) -> None:
    producer = await _producer(bootstrap_servers)
    try:
        await producer.send_and_wait(INSTANCES, config.model_dump_json().encode(), key=config.id.encode())
    finally:
        await producer.stop()


async def delete_instance(bootstrap_servers: str, instance_id: str) -> None:
    producer = await _producer(bootstrap_servers)
    try:
        await producer.send_and_wait(INSTANCES, None, key=instance_id.encode())
    finally:
        await producer.stop()


async def read_instances(bootstrap_servers: str) -> dict[str, InstanceConfig]:
    """A one-off snapshot of the topic (for the CLI and the console)."""
    registry = TopicInstanceRegistry(bootstrap_servers)
    await registry.start()
    try:
        return {i.id: i for i in registry.all()}
    finally:
        await registry.stop()
