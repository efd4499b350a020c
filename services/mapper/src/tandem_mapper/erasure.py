"""The mapper's part of erasing a contact: it follows `tandem.erasure` and removes the contact from Redis.

Redis holds the mapper's own stores (sync state, held changes, the accessplanit user → address table) and the
writer's markers, whose names for an accessplanit contact only this table links to the address: the mapper erases
those markers too before it deletes the links (`tandem_shared.redis.erasure`; the writer erases its own as well,
whichever comes first). The loop (offsets kept in Redis after each request is applied and acknowledged) is
`tandem_shared.erasure.ErasureApplier`'s.
"""

from __future__ import annotations

from tandem_shared import erasure
from tandem_shared.contracts import ErasureRequest
from tandem_shared.instances import InstanceRegistry
from tandem_shared.kafka import KafkaConnection, Producer
from tandem_shared.redis.erasure import ContactEraser


class _InstancesEraser:
    """A request for every instance erases the contact from each instance the registry knows."""

    def __init__(self, registry: InstanceRegistry, eraser: ContactEraser) -> None:
        self._registry = registry
        self._eraser = eraser
        self.positions = eraser.positions
        self.applied = eraser.applied

    async def erase(self, request: ErasureRequest) -> dict[str, int]:
        instances = [request.instance_id] if request.instance_id else [i.id for i in self._registry.all()]
        return (await self._eraser.erase(instances, request.email)).counts()


class ErasureApplier(erasure.ErasureApplier):
    def __init__(
        self, connection: KafkaConnection, producer: Producer, registry: InstanceRegistry, eraser: ContactEraser
    ) -> None:
        super().__init__(connection, producer, "mapper", _InstancesEraser(registry, eraser))
