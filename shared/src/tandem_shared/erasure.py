"""Asking for a contact's erasure, applying it, acknowledging it: one way for the CLI, the console and the services.

`request_erasure` publishes an `ErasureRequest` on `tandem.erasure` and returns once Kafka has it (acks=all). Each
service in `ERASURE_SERVICES` applies it to its own stores and publishes an `ErasureAcknowledgement`
(`acknowledgement`): a trace record of stage `erasure` whose execution id is the request id, saying what was
removed in counts and naming the contact by its keyed hash only. `ErasureApplier` is that loop for a service whose
stores are in Redis (ingest, writer; the mapper's adds the instance registry), `AcknowledgementWaiter` what
`tandem contacts forget --wait` reads them with.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Protocol

from pydantic import ValidationError

from tandem_shared.contracts import (
    ERASURE_SERVICES,
    ErasureAcknowledgement,
    ErasureRequest,
    Stage,
    TraceRecord,
    TraceStatus,
    utcnow,
)
from tandem_shared.contracts.envelopes import erasure_envelope
from tandem_shared.contracts.erasure import by_service
from tandem_shared.contracts.topics import ERASURE, TRACE
from tandem_shared.ids import new_id
from tandem_shared.kafka.admin import partitions_of
from tandem_shared.kafka.connection import KafkaConnection
from tandem_shared.kafka.follower import Record, TopicFollower
from tandem_shared.kafka.producer import Producer, send_envelope
from tandem_shared.logging import get_logger
from tandem_shared.tracing import StepRecorder, publish_trace

log = get_logger("tandem.erasure")

# The instance an acknowledgement names when the request was for every instance.
EVERY_INSTANCE = "*"


def erasure_request(email: str, *, instance_id: str | None = None, requested_by: str = "operator") -> ErasureRequest:
    return ErasureRequest(
        request_id=new_id(), email=email, instance_id=instance_id, requested_at=utcnow(), requested_by=requested_by
    )


async def request_erasure(producer: Producer, request: ErasureRequest) -> None:
    await (await send_envelope(producer, erasure_envelope(request)))


def _described(removed: Mapping[str, int]) -> str:
    return ", ".join(f"{count} {what}" for what, count in removed.items()) or "nothing"


def acknowledgement(
    request: ErasureRequest, service: str, removed: Mapping[str, int], *, kept: str = ""
) -> TraceRecord:
    """`removed`: what the service removed, in counts by kind ("sync state key(s)": 2); `kept`: what it keeps by
    design (never the address)."""
    ack = ErasureAcknowledgement(
        request_id=request.request_id,
        service=service,
        contact=request.contact,
        instance_id=request.instance_id,
        removed=dict(removed),
        kept=kept,
        acknowledged_at=utcnow(),
    )
    step = StepRecorder(
        stage=Stage.ERASURE, execution_id=request.request_id, instance_id=request.instance_id or EVERY_INSTANCE
    )
    step.log("info", f"requested by {request.requested_by} at {request.requested_at.isoformat()}")
    if kept:
        step.log("info", f"kept: {kept}")
    return step.finish(
        TraceStatus.SUCCEEDED,
        f"Contact erased by the {service} ({request.scope}): {_described(removed)}",
        data_out=ack.model_dump(mode="json"),
    )


class StoreEraser(Protocol):
    """One service's stores: erases a contact, and remembers how far into `tandem.erasure` it has applied."""

    async def erase(self, request: ErasureRequest) -> Mapping[str, int]: ...

    async def positions(self) -> dict[int, int]: ...

    async def applied(self, partition: int, next_offset: int) -> None: ...


class ErasureApplier:
    """Follows `tandem.erasure` whole (no group), applies each request and acknowledges it. The offset of the next
    request is stored once a request is applied and acknowledged: a restart neither skips one nor erases again a
    contact that came back after its request was applied."""

    def __init__(
        self, connection: KafkaConnection, producer: Producer, service: str, eraser: StoreEraser, *, kept: str = ""
    ) -> None:
        self._producer = producer
        self._service = service
        self._eraser = eraser
        self._kept = kept
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
                removed = await self._eraser.erase(request)
                await publish_trace(self._producer, acknowledgement(request, self._service, removed, kept=self._kept))
                log.info("contact erased", request_id=request.request_id, removed=_described(removed))
            await self._eraser.applied(record.partition, record.offset + 1)


class AcknowledgementWaiter:
    """Reads `tandem.trace` from where it ends when `start` returns (so start it before publishing the request)
    and collects the acknowledgements of one request, one per service (`by_service`: several replicas of a service
    each acknowledge it)."""

    def __init__(self, connection: KafkaConnection) -> None:
        self._connection = connection
        self._start: dict[int, int] = {}
        self._follower = TopicFollower(connection, TRACE, positions=self._positions)
        self._found: list[ErasureAcknowledgement] = []

    @property
    def acknowledgements(self) -> dict[str, ErasureAcknowledgement]:
        return by_service(self._found)

    async def _positions(self) -> dict[int, int]:
        return self._start

    async def start(self) -> None:
        consumer = self._connection.consumer(enable_auto_commit=False)
        await consumer.start()
        try:
            ends = await consumer.end_offsets(await partitions_of(self._connection, TRACE))
        finally:
            await consumer.stop()
        self._start = {tp.partition: offset for tp, offset in ends.items()}
        await self._follower.start()

    async def stop(self) -> None:
        await self._follower.stop()

    async def wait(
        self, request_id: str, timeout_s: float, services: Iterable[str] = ERASURE_SERVICES
    ) -> dict[str, ErasureAcknowledgement]:
        """The acknowledgements found within `timeout_s`, by service (fewer than `services` when it ran out)."""
        wanted = set(services)

        async def collect(records: list[Record]) -> None:
            for record in records:
                try:
                    trace = TraceRecord.model_validate_json(record.value or b"")
                except ValidationError:
                    continue
                if trace.stage is not Stage.ERASURE or trace.execution_id != request_id:
                    continue
                ack = ErasureAcknowledgement.from_data_out(trace.output.data_out)
                if ack is not None:
                    self._found.append(ack)

        async def until_all() -> None:
            while not wanted <= set(self.acknowledgements):
                await self._follower.poll(collect)

        try:
            await asyncio.wait_for(until_all(), timeout=timeout_s)
        except TimeoutError:
            pass
        return self.acknowledgements
