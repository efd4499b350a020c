"""Building and publishing trace records: every stage reports what it did to `tandem.trace`."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tandem_shared.contracts import (
    ChangeEvent,
    ErrorInfo,
    Flow,
    LogLine,
    Stage,
    StepOutput,
    SyncCommand,
    TraceRecord,
    TraceStatus,
    Trigger,
    utcnow,
)
from tandem_shared.contracts.envelopes import trace_envelope
from tandem_shared.contracts.trace import LogLevel
from tandem_shared.ids import new_id
from tandem_shared.kafka.producer import Producer, send_envelope
from tandem_shared.logging import get_logger
from tandem_shared.redaction import redact, redact_text

log = get_logger("tandem.tracing")


class StepRecorder:
    """Collects log lines and timing for one step; `finish` turns them into a TraceRecord with secrets masked."""

    def __init__(
        self,
        *,
        stage: Stage,
        execution_id: str,
        instance_id: str,
        flow: Flow | None = None,
        trigger: Trigger | None = None,
        original_execution_id: str | None = None,
        attempt: int = 1,
        contact_email: str | None = None,
        accessplanit_user_id: str | None = None,
    ) -> None:
        self.stage = stage
        self.execution_id = execution_id
        self.instance_id = instance_id
        self.flow = flow
        self.trigger = trigger
        self.original_execution_id = original_execution_id
        self.attempt = attempt
        self.contact_email = contact_email
        self.accessplanit_user_id = accessplanit_user_id
        self._started_at = utcnow()
        self._t0 = time.perf_counter()
        self._logs: list[LogLine] = []

    @classmethod
    def about(
        cls,
        stage: Stage,
        subject: ChangeEvent | SyncCommand,
        *,
        attempt: int = 1,
        execution_id: str | None = None,
        original_execution_id: str | None = None,
        trigger: Trigger | None = None,
    ) -> StepRecorder:
        """A step about `subject`'s contact, in the execution it belongs to unless `execution_id` names another
        (a replay starts a new execution about the same change or command)."""
        return cls(
            stage=stage,
            execution_id=execution_id or subject.execution_id,
            original_execution_id=original_execution_id or subject.original_execution_id,
            instance_id=subject.instance_id,
            flow=subject.flow,
            trigger=trigger or subject.trigger,
            attempt=attempt,
            contact_email=subject.identity.email,
            accessplanit_user_id=subject.identity.accessplanit_user_id,
        )

    def log(self, level: LogLevel, message: str) -> None:
        self._logs.append(LogLine(at=utcnow(), level=level, message=redact_text(message)))

    def finish(
        self,
        status: TraceStatus,
        summary: str,
        *,
        data_in: dict[str, Any] | None = None,
        data_out: dict[str, Any] | None = None,
        error: ErrorInfo | None = None,
        changes_detected: bool | None = None,
    ) -> TraceRecord:
        if error is not None:
            self.log("error", error.message)
        return TraceRecord(
            record_id=new_id(),
            execution_id=self.execution_id,
            original_execution_id=self.original_execution_id,
            instance_id=self.instance_id,
            flow=self.flow,
            trigger=self.trigger,
            stage=self.stage,
            status=status,
            summary=redact_text(summary),
            changes_detected=changes_detected,
            contact_email=self.contact_email,
            accessplanit_user_id=self.accessplanit_user_id,
            attempt=self.attempt,
            output=StepOutput(data_in=redact(data_in), data_out=redact(data_out)),
            logs=list(self._logs),
            error=error,
            started_at=self._started_at,
            finished_at=utcnow(),
            duration_ms=round((time.perf_counter() - self._t0) * 1000, 3),
        )


def _report_lost_trace(delivery: asyncio.Future[Any]) -> None:
    if not delivery.cancelled() and delivery.exception() is not None:
        log.warning("trace record not published", error=str(delivery.exception()))


async def publish_trace(producer: Producer, record: TraceRecord) -> None:
    """Hands the record to the producer without waiting for Kafka's acknowledgement.

    Waiting cost every stage a broker round trip per change. The producer still sends records in order, in
    batches, and flushes what it holds on a clean shutdown; a record Kafka refuses is logged, never retried by
    the caller (the change it describes is durable already).
    """
    delivery = await send_envelope(producer, trace_envelope(record))
    delivery.add_done_callback(_report_lost_trace)
