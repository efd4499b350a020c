"""Kafka side of ingest: a change event is acknowledged to the vendor only once Kafka has it (acks=all)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from tandem_shared.contracts import ChangeEvent, Stage, TraceStatus
from tandem_shared.contracts.envelopes import change_envelope
from tandem_shared.kafka import Producer, send_envelope
from tandem_shared.logging import get_logger
from tandem_shared.tracing import StepRecorder, publish_trace

log = get_logger("tandem.ingest")


class KafkaUnavailable(RuntimeError):
    pass


class ChangePublisher:
    def __init__(self, producer: Producer, timeout_s: float) -> None:
        self._producer = producer
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
        try:
            async with asyncio.timeout(self._timeout_s):
                await (await send_envelope(self._producer, change_envelope(event, headers=headers)))
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
            await publish_trace(self._producer, record)
        except Exception as exc:  # the event is durable already; a lost trace must not make the sender retry
            log.warning("trace record not published", execution_id=event.execution_id, error=str(exc))
