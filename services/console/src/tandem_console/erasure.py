"""The console's part of erasing a contact: it follows `tandem.erasure` and forgets the contact in its own store.

The requests' offsets are kept in the store, in the same transaction as the erasure (like the trace's), so each
request is applied once; the acknowledgement (a trace record without the address) follows. The console's operator
action publishes a request like `tandem contacts forget` does: every service then applies it, this one included.
"""

from __future__ import annotations

import asyncio

from pydantic import ValidationError

from tandem_console.store import TraceStore
from tandem_shared.contracts import ErasureRequest
from tandem_shared.contracts.topics import ERASURE
from tandem_shared.erasure import acknowledgement, erasure_request, request_erasure
from tandem_shared.kafka import KafkaConnection, Producer, TopicFollower
from tandem_shared.kafka.follower import Record
from tandem_shared.logging import get_logger
from tandem_shared.tracing import publish_trace

log = get_logger("tandem.console.erasure")


class ErasureFollower:
    def __init__(self, connection: KafkaConnection, producer: Producer, store: TraceStore) -> None:
        self._producer = producer
        self._store = store
        self._follower = TopicFollower(connection, ERASURE, positions=self._positions)

    async def _positions(self) -> dict[int, int]:
        return await asyncio.to_thread(self._store.offsets, ERASURE)

    async def start(self) -> None:
        await self._follower.start()
        self._follower.follow(self.apply, rewind_on_error=True, name="erasure")

    async def stop(self) -> None:
        await self._follower.stop()

    async def apply(self, records: list[Record]) -> None:
        for record in records:
            offsets = {record.partition: record.offset + 1}
            try:
                request = ErasureRequest.model_validate_json(record.value or b"")
            except ValidationError:
                log.error("unreadable erasure request skipped", partition=record.partition, offset=record.offset)
                await asyncio.to_thread(self._store.add, [], topic=ERASURE, next_offsets=offsets)
                continue
            erased = await asyncio.to_thread(self._store.forget, request, topic=ERASURE, next_offsets=offsets)
            await publish_trace(self._producer, acknowledgement(request, "console", {"execution(s)": erased}))


class ErasureRequests:
    """The operator action: publishes a request and returns its id once Kafka has it."""

    def __init__(self, producer: Producer, timeout_s: float) -> None:
        self._producer = producer
        self._timeout_s = timeout_s

    async def request(self, email: str, instance_id: str | None, requested_by: str) -> ErasureRequest:
        request = erasure_request(email, instance_id=instance_id, requested_by=requested_by)
        await asyncio.wait_for(request_erasure(self._producer, request), timeout=self._timeout_s)
        return request
