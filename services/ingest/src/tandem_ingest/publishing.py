"""Kafka side of ingest: a change event is acknowledged to the vendor only once Kafka has it (acks=all)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from tandem_ingest.trace import ReceiptStep
from tandem_shared.contracts import ChangeEvent, Stage
from tandem_shared.contracts.envelopes import change_envelope
from tandem_shared.instances import InstanceRegistry
from tandem_shared.kafka import Producer, send_envelope
from tandem_shared.logging import get_logger
from tandem_shared.tracing import publish_trace

log = get_logger("tandem.ingest")


class KafkaUnavailable(RuntimeError):
    pass


class ChangePublisher:
    def __init__(self, producer: Producer, timeout_s: float, registry: InstanceRegistry | None = None) -> None:
        """`registry`: says which fields each instance maps, the only ones the trace keeps (none without it)."""
        self._producer = producer
        self._timeout_s = timeout_s
        self._registry = registry

    async def publish(
        self,
        event: ChangeEvent,
        *,
        stage: Stage = Stage.INGEST,
        notes: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Returns once Kafka has the event; `notes` go to the trace's log, `headers` onto the record."""
        instance = self._registry.get(event.instance_id) if self._registry is not None else None
        step = ReceiptStep(event, stage, instance)
        try:
            async with asyncio.timeout(self._timeout_s):
                await (await send_envelope(self._producer, change_envelope(event, headers=headers)))
        except Exception as exc:  # any producer failure means "not durable": the sender must retry
            raise KafkaUnavailable(str(exc) or type(exc).__name__) from exc
        record = step.stored(notes)
        try:
            await publish_trace(self._producer, record)
        except Exception as exc:  # the event is durable already; a lost trace must not make the sender retry
            log.warning("trace record not published", execution_id=event.execution_id, error=str(exc))
