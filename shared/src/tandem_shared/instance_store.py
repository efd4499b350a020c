"""Instance configurations on the compacted `tandem.instances` topic, keyed by instance id.

Every service materializes the topic at start (reads it to the end before it serves) and then follows it, so a
configuration change — a new mapping, a pause — applies within a second or two, without a restart. A deletion is a
tombstone (no value); compaction removes it after a while, so a registry knows an instance was deleted only if it
saw the tombstone (the console stores deletions for good).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import ValidationError

from tandem_shared.contracts import InstanceConfig
from tandem_shared.contracts.envelopes import instance_envelope
from tandem_shared.contracts.topics import INSTANCES
from tandem_shared.instances import DeleteListener, Listener, settled
from tandem_shared.kafka import KafkaConnection, KafkaProducer, TopicFollower, send_envelope
from tandem_shared.kafka.follower import Record
from tandem_shared.logging import get_logger
from tandem_shared.redis.client import connect_url
from tandem_shared.redis.purge import purge_instance

log = get_logger("tandem.instances")


class TopicInstanceRegistry:
    def __init__(self, connection: KafkaConnection, topic: str = INSTANCES) -> None:
        self._follower = TopicFollower(connection, topic)
        self._configs: dict[str, InstanceConfig] = {}
        self._deleted: dict[str, datetime] = {}
        self._listeners: list[Listener] = []
        self._delete_listeners: list[DeleteListener] = []
        self._loading = False

    def get(self, instance_id: str) -> InstanceConfig | None:
        return self._configs.get(instance_id)

    def all(self) -> list[InstanceConfig]:
        return list(self._configs.values())

    def on_change(self, listener: Listener) -> None:
        """`listener(old, new)` runs after each change; new is None when the instance was deleted."""
        self._listeners.append(listener)

    def on_delete(self, listener: DeleteListener) -> None:
        """`listener(instance_id, deleted_at)` runs after each tombstone, after the `on_change` listeners; at start,
        once the topic is read, for each instance that is deleted then."""
        self._delete_listeners.append(listener)

    def deleted_at(self, instance_id: str) -> datetime | None:
        """The time of the tombstone this registry saw last for the instance (remembered for the life of the
        process, until the id is applied again)."""
        return self._deleted.get(instance_id)

    def deleted(self) -> dict[str, datetime]:
        """Every instance seen deleted and not applied again since."""
        return dict(self._deleted)

    async def start(self) -> None:
        await self._follower.start()
        self._loading = True
        try:
            await self._follower.read_to_end(self._apply_all)
        finally:
            self._loading = False
        # Only the deletions that still hold: an id deleted and applied again since (its tombstone not compacted
        # yet) must not lose what it holds now to the old deletion on every restart.
        for instance_id, deleted_at in list(self._deleted.items()):
            await self._notify_deleted(instance_id, deleted_at)
        self._follower.follow(self._apply_all, name="instance-registry")
        log.info("instances loaded", count=len(self._configs))

    async def stop(self) -> None:
        await self._follower.stop()

    async def _apply_all(self, records: list[Record]) -> None:
        for record in records:
            await self._apply(record.key, record.value, record.timestamp)

    async def _apply(self, key: bytes | None, value: bytes | None, timestamp_ms: int) -> None:
        if key is None:
            return
        instance_id = key.decode()
        old = self._configs.get(instance_id)
        new: InstanceConfig | None = None
        deleted_at: datetime | None = None
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
            self._deleted.pop(instance_id, None)
        else:
            self._configs.pop(instance_id, None)
            deleted_at = self._deleted[instance_id] = datetime.fromtimestamp(timestamp_ms / 1000, UTC)
        for listener in self._listeners:
            await settled(listener(old, new))
        if deleted_at is not None and not self._loading:
            await self._notify_deleted(instance_id, deleted_at)

    async def _notify_deleted(self, instance_id: str, deleted_at: datetime) -> None:
        for listener in self._delete_listeners:
            await settled(listener(instance_id, deleted_at))


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
    """The tombstone only; `remove_instance` is the whole deletion."""
    await _put(connection, instance_id, None)


async def remove_instance(connection: KafkaConnection, redis_url: str, instance_id: str) -> int:
    """Deletes an instance (`tandem instances delete`, and every test that created one): the tombstone, once Kafka
    has acknowledged it, then the instance's Redis state, so a re-created id starts clean. Returns how many Redis
    keys were removed. Every service stops syncing the instance as soon as its registry sees the tombstone."""
    await delete_instance(connection, instance_id)
    redis = connect_url(redis_url, max_connections=2)
    try:
        return await purge_instance(redis, instance_id)
    finally:
        await redis.aclose()


@dataclass(frozen=True)
class InstancesSnapshot:
    instances: dict[str, InstanceConfig]
    deleted: dict[str, datetime]  # the tombstones still on the topic (not compacted away yet)


async def read_snapshot(connection: KafkaConnection) -> InstancesSnapshot:
    """A one-off snapshot of the topic (for the CLI and the console)."""
    registry = TopicInstanceRegistry(connection)
    await registry.start()
    try:
        return InstancesSnapshot({i.id: i for i in registry.all()}, registry.deleted())
    finally:
        await registry.stop()


async def read_instances(connection: KafkaConnection) -> dict[str, InstanceConfig]:
    return (await read_snapshot(connection)).instances
