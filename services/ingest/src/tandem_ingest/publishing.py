"""Kafka side of ingest: a change event is acknowledged to the vendor only once Kafka has it (acks=all)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from faststream.kafka import KafkaBroker

from tandem_shared.contracts import ChangeEvent, Headers, Stage, TraceStatus, message_key
from tandem_shared.contracts.topics import CHANGES
from tandem_shared.logging import get_logger
from tandem_shared.tracing import StepRecorder, publish_trace

log = get_logger("tandem.ingest")


class KafkaUnavailable(RuntimeError):
    pass


class ChangePublisher:
    def __init__(self, broker: KafkaBroker, timeout_s: float) -> None:
        self._broker = broker
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
            await asyncio.wait_for(
                self._broker.publish(
                    event,
                    topic=CHANGES,
                    key=message_key(event.instance_id, event.identity.contact_key).encode(),
                    headers=headers,
                ),
                timeout=self._timeout_s,
            )
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
            await publish_trace(self._broker, record)
        except Exception as exc:  # the event is durable already; a lost trace must not make the sender retry
            log.warning("trace record not published", execution_id=event.execution_id, error=str(exc))
