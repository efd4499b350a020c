"""The mapper's part of erasing a contact: it follows `tandem.erasure` and removes the contact from Redis.

Redis holds the mapper's own stores (sync state, held changes, the accessplanit user → address table) and the
writer's markers, whose names for an accessplanit contact only this table links to the address: one applier
does all of Redis (`tandem_shared.redis.erasure`). The topic is read whole (no group); the offset of the next
request is kept in Redis after each request is applied and acknowledged, so a restart neither skips one nor
erases again a contact that came back after its request was applied.
"""

from __future__ import annotations

from pydantic import ValidationError

from tandem_shared.contracts import ErasureRequest
from tandem_shared.contracts.topics import ERASURE
from tandem_shared.erasure import acknowledgement
from tandem_shared.instances import InstanceRegistry
from tandem_shared.kafka import KafkaConnection, Producer, TopicFollower
from tandem_shared.kafka.follower import Record
from tandem_shared.logging import get_logger
from tandem_shared.redis.erasure import ContactEraser
from tandem_shared.tracing import publish_trace

log = get_logger("tandem.mapper.erasure")


class ErasureApplier:
    def __init__(
        self, connection: KafkaConnection, producer: Producer, registry: InstanceRegistry, eraser: ContactEraser
    ) -> None:
        self._producer = producer
        self._registry = registry
        self._eraser = eraser
        self._follower = TopicFollower(connection, ERASURE, positions=eraser.positions)

    async def start(self) -> None:
        await self._follower.start()
        self._follower.follow(self.apply, rewind_on_error=True, name="erasure")

    async def stop(self) -> None:
        await self._follower.stop()

    async def apply(self, records: list[Record]) -> None:
        for record in records:
            try:
                request = ErasureRequest.model_validate_json(record.value or b"")
            except ValidationError:
                log.error("unreadable erasure request skipped", partition=record.partition, offset=record.offset)
            else:
                await self.erase(request)
            await self._eraser.applied(record.partition, record.offset + 1)

    async def erase(self, request: ErasureRequest) -> None:
        instances = [request.instance_id] if request.instance_id else [i.id for i in self._registry.all()]
        erased = await self._eraser.erase(instances, request.email)
        await publish_trace(self._producer, acknowledgement(request, "mapper", erased.summary()))
        log.info("contact erased", request_id=request.request_id, removed=erased.summary())
