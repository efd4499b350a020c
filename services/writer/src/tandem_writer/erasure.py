"""The writer's part of erasing a contact: its idempotency and newest-change markers in Redis.

The writer keeps nothing else of a contact: a command is held in memory only while it is being written, and what a
target holds is recorded in the sync state (the mapper's to erase). Claims under a write in progress (`:lock`)
expire on their own (`tandem_shared.redis.erasure`).
"""

from __future__ import annotations

from redis.asyncio import Redis

from tandem_shared import erasure
from tandem_shared.contracts import ErasureRequest
from tandem_shared.instances import InstanceRegistry
from tandem_shared.kafka import KafkaConnection, Producer
from tandem_shared.redis.erasure import RedisErasureOffsets, erase_writer_markers


class WriterEraser(RedisErasureOffsets):
    def __init__(self, redis: Redis, registry: InstanceRegistry) -> None:
        super().__init__(redis, "writer")
        self._registry = registry

    async def erase(self, request: ErasureRequest) -> dict[str, int]:
        instances = [request.instance_id] if request.instance_id else [i.id for i in self._registry.all()]
        return {"writer marker(s)": await erase_writer_markers(self._redis, instances, request.email)}


def writer_erasure(
    connection: KafkaConnection, producer: Producer, redis: Redis, registry: InstanceRegistry
) -> erasure.ErasureApplier:
    return erasure.ErasureApplier(connection, producer, "writer", WriterEraser(redis, registry))
