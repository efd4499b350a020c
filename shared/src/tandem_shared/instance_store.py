"""Instance configurations on the compacted `tandem.instances` topic, keyed by instance id.

Every service materializes the topic at start (reads it to the end before it serves) and then follows it, so a
configuration change — a new mapping, a pause — applies within a second or two, without a restart.
"""

from __future__ import annotations

import inspect

from pydantic import ValidationError

from tandem_shared.contracts import InstanceConfig
from tandem_shared.contracts.envelopes import instance_envelope
from tandem_shared.contracts.topics import INSTANCES
from tandem_shared.instances import Listener
from tandem_shared.kafka import KafkaConnection, KafkaProducer, TopicFollower, send_envelope
from tandem_shared.kafka.follower import Record
from tandem_shared.logging import get_logger

log = get_logger("tandem.instances")


class TopicInstanceRegistry:
    def __init__(self, connection: KafkaConnection, topic: str = INSTANCES) -> None:
        self._follower = TopicFollower(connection, topic)
        self._configs: dict[str, InstanceConfig] = {}
        self._listeners: list[Listener] = []

    def get(self, instance_id: str) -> InstanceConfig | None:
        return self._configs.get(instance_id)

    def all(self) -> list[InstanceConfig]:
        return list(self._configs.values())

    def on_change(self, listener: Listener) -> None:
        """`listener(old, new)` runs after each change; new is None when the instance was deleted."""
        self._listeners.append(listener)

    async def start(self) -> None:
        await self._follower.start()
        await self._follower.read_to_end(self._apply_all)
        self._follower.follow(self._apply_all, name="instance-registry")
        log.info("instances loaded", count=len(self._configs))

    async def stop(self) -> None:
        await self._follower.stop()

    async def _apply_all(self, records: list[Record]) -> None:
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
        for listener in self._listeners:
            result = listener(old, new)
            if inspect.isawaitable(result):
                await result


async def _put(connection: KafkaConnection, instance_id: str, config: InstanceConfig | None) -> None:
    producer = KafkaProducer(connection)
    await producer.start()
    try:
        await (await send_envelope(producer, instance_envelope(instance_id, config)))
    finally:
        await producer.stop()


async def put_instance(connection: KafkaConnection, config: InstanceConfig) -> None:
    await _put(connection, config.id, config)


async def delete_instance(connection: KafkaConnection, instance_id: str) -> None:
    await _put(connection, instance_id, None)


async def read_instances(connection: KafkaConnection) -> dict[str, InstanceConfig]:
    """A one-off snapshot of the topic (for the CLI and the console)."""
    registry = TopicInstanceRegistry(connection)
    await registry.start()
    try:
        return {i.id: i for i in registry.all()}
    finally:
        await registry.stop()
