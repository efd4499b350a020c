"""Kafka side of ingest: a change event is acknowledged to the vendor only once Kafka has it (acks=all)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from faststream.kafka import KafkaBroker

from tandem_shared.contracts import ChangeEvent, Headers, Stage, TraceRecord, TraceStatus, message_key
from tandem_shared.contracts.topics import CHANGES, TRACE
from tandem_shared.logging import get_logger
from tandem_shared.tracing import StepRecorder, new_id

log = get_logger("tandem.ingest")

_JSON = b"application/json"


class KafkaUnavailable(RuntimeError):
    pass


class BrokerRecords:
    """Sends records through the broker's own aiokafka producer (acks=all, idempotent, lingering).

    FastStream's `publish` costs a publish command, its middleware chain and a codec per record: about a fifth of
    ingest's CPU per webhook. The records are the ones it would send: the JSON of the model as the value and its
    `content-type` and `correlation_id` headers ahead of ours, so consumers cannot tell the difference.
    """

    def __init__(self, broker: KafkaBroker) -> None:
        self._broker = broker

    def _producer(self) -> AIOKafkaProducer:
        # Before `broker.start()` (or while Kafka is being reconnected) there is no producer: not durable.
        producer: AIOKafkaProducer = self._broker.config.producer._producer.producer  # type: ignore[attr-defined]
        return producer

    async def send(self, topic: str, value: bytes, *, key: bytes, headers: Mapping[str, str]) -> asyncio.Future[Any]:
        """Hands the record to the producer; the returned future resolves once Kafka acknowledged it."""
        record_headers = [("content-type", _JSON), ("correlation_id", _correlation_id())]
        record_headers.extend((name, text.encode()) for name, text in headers.items())
        future: asyncio.Future[Any] = await self._producer().send(topic, value=value, key=key, headers=record_headers)
        return future


def _correlation_id() -> bytes:
    """What FastStream puts there, `str(uuid.uuid4())`, from `new_id`'s cheaper random UUID."""
    hex_id = new_id()
    return f"{hex_id[:8]}-{hex_id[8:12]}-{hex_id[12:16]}-{hex_id[16:20]}-{hex_id[20:]}".encode()


def _report_lost_trace(delivery: asyncio.Future[Any]) -> None:
    if not delivery.cancelled() and delivery.exception() is not None:
        log.warning("trace record not published", error=str(delivery.exception()))


class ChangePublisher:
    def __init__(self, broker: KafkaBroker, timeout_s: float) -> None:
        self._records = BrokerRecords(broker)
        self._timeout_s = timeout_s

    async def publish(
        self,
        event: ChangeEvent,
        *,
        stage: Stage = Stage.INGEST,
        notes: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Returns once Kafka has the event; `notes` go to the trace's log, `headers` onto the record."""
        step = StepRecorder(
            stage=stage,
            execution_id=event.execution_id,
            original_execution_id=event.original_execution_id,
            instance_id=event.instance_id,
            flow=event.flow,
            trigger=event.trigger,
            contact_email=event.identity.email,
            accessplanit_user_id=event.identity.accessplanit_user_id,
        )
        headers = {
            **(headers or {}),
            Headers.INSTANCE_ID: event.instance_id,
            Headers.EXECUTION_ID: event.execution_id,
            Headers.EVENT_ID: event.event_id,
        }
        try:
            async with asyncio.timeout(self._timeout_s):
                delivery = await self._records.send(
                    CHANGES,
                    event.model_dump_json().encode(),
                    key=message_key(event.instance_id, event.identity.contact_key).encode(),
                    headers=headers,
                )
                await delivery
        except Exception as exc:  # any producer failure means "not durable": the sender must retry
            raise KafkaUnavailable(str(exc) or type(exc).__name__) from exc
        for note in notes:
            step.log("info", note)
        step.log("info", f"{event.source.label} {event.kind.value} event {event.event_id} accepted")
        record = step.finish(
            TraceStatus.SUCCEEDED,
            f"Received {event.source.label} {event.kind.value} ({event.trigger.value})",
            data_in=event.fields,
            data_out=event.model_dump(mode="json"),
        )
        try:
            await self._trace(record)
        except Exception as exc:  # the event is durable already; a lost trace must not make the sender retry
            log.warning("trace record not published", execution_id=event.execution_id, error=str(exc))

    async def _trace(self, record: TraceRecord) -> None:
        # As `tandem_shared.tracing.publish_trace`: the same record and headers, not waiting for Kafka's ack.
        delivery = await self._records.send(
            TRACE,
            record.model_dump_json().encode(),
            key=record.execution_id.encode(),
            headers={Headers.INSTANCE_ID: record.instance_id, Headers.EXECUTION_ID: record.execution_id},
        )
        delivery.add_done_callback(_report_lost_trace)
