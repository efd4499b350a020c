"""The console's part of erasing a contact: it follows `tandem.erasure` and forgets the contact in its own store.

The shared `ErasureApplier` (`tandem_shared.erasure`) follows the topic, applies each request and acknowledges it
(a trace record without the address), as in every other service; `ConsoleEraser` is the console's store behind it:
the contact's executions, and how far into `tandem.erasure` it has applied (stored once a request is acknowledged,
so a restart neither skips a request nor loses its acknowledgement). The console's operator action publishes a
request like `tandem contacts forget` does: every service then applies it, this one included.
"""

from __future__ import annotations

import asyncio

from tandem_console.store import TraceStore
from tandem_shared.contracts import ErasureRequest
from tandem_shared.contracts.topics import ERASURE
from tandem_shared.erasure import ErasureApplier, erasure_request, request_erasure
from tandem_shared.kafka import KafkaConnection, Producer


class ConsoleEraser:
    """The console's store as the shared applier's `StoreEraser`."""

    def __init__(self, store: TraceStore) -> None:
        self._store = store

    async def erase(self, request: ErasureRequest) -> dict[str, int]:
        erased = await asyncio.to_thread(self._store.forget, request, topic=ERASURE, next_offsets={})
        return {"execution(s)": erased}

    async def positions(self) -> dict[int, int]:
        return await asyncio.to_thread(self._store.offsets, ERASURE)

    async def applied(self, partition: int, next_offset: int) -> None:
        await asyncio.to_thread(self._store.add, [], topic=ERASURE, next_offsets={partition: next_offset})


def console_erasure(connection: KafkaConnection, producer: Producer, store: TraceStore) -> ErasureApplier:
    return ErasureApplier(connection, producer, "console", ConsoleEraser(store))


class ErasureRequests:
    """The operator action: publishes a request and returns its id once Kafka has it."""

    def __init__(self, producer: Producer, timeout_s: float) -> None:
        self._producer = producer
        self._timeout_s = timeout_s

    async def request(self, email: str, instance_id: str | None, requested_by: str) -> ErasureRequest:
        request = erasure_request(email, instance_id=instance_id, requested_by=requested_by)
        await asyncio.wait_for(request_erasure(self._producer, request), timeout=self._timeout_s)
        return request
