"""Building TraceRecords and ChangeEvents for tests, as the stages would publish them."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from tandem_shared.contracts import (
    ChangeEvent,
    ChangeKind,
    ContactIdentity,
    ErrorInfo,
    Flow,
    LogLine,
    Stage,
    StepOutput,
    System,
    TraceRecord,
    TraceStatus,
    Trigger,
    utcnow,
)


def change_event(
    instance_id: str,
    execution_id: str,
    *,
    email: str | None = "ada@example.com",
    user_id: str = "1001",
    at: datetime | None = None,
    trigger: Trigger = Trigger.WEBHOOK,
) -> ChangeEvent:
    at = at or utcnow()
    return ChangeEvent(
        event_id=uuid.uuid4().hex,
        execution_id=execution_id,
        instance_id=instance_id,
        source=System.ACCESSPLANIT,
        kind=ChangeKind.UPDATED,
        identity=ContactIdentity(accessplanit_user_id=user_id, email=email),
        fields={"ID": user_id, "Forenames": "Ada", "Surname": "Lovelace", "Email": email},
        occurred_at=at,
        received_at=at,
        trigger=trigger,
    )


def trace(
    execution_id: str,
    instance_id: str,
    stage: Stage,
    status: TraceStatus,
    *,
    at: datetime,
    summary: str | None = None,
    flow: Flow | None = Flow.ACCESSPLANIT_TO_MAILCHIMP,
    trigger: Trigger | None = Trigger.WEBHOOK,
    original_execution_id: str | None = None,
    changes_detected: bool | None = None,
    email: str | None = None,
    user_id: str | None = None,
    attempt: int = 1,
    data_in: dict[str, Any] | None = None,
    data_out: dict[str, Any] | None = None,
    error: ErrorInfo | None = None,
    logs: list[LogLine] | None = None,
) -> TraceRecord:
    lines = list(logs or [LogLine(at=at, level="info", message=f"{stage.value} {status.value}")])
    if error is not None:
        lines.append(LogLine(at=at, level="error", message=error.message))
    return TraceRecord(
        record_id=uuid.uuid4().hex,
        execution_id=execution_id,
        original_execution_id=original_execution_id,
        instance_id=instance_id,
        flow=flow,
        trigger=trigger,
        stage=stage,
        status=status,
        summary=summary or f"{stage.value} {status.value}",
        changes_detected=changes_detected,
        contact_email=email,
        accessplanit_user_id=user_id,
        attempt=attempt,
        output=StepOutput(data_in=data_in, data_out=data_out),
        logs=lines,
        error=error,
        started_at=at,
        finished_at=at + timedelta(milliseconds=5),
        duration_ms=5.0,
    )


def ingest_record(event: ChangeEvent, *, at: datetime | None = None) -> TraceRecord:
    return trace(
        event.execution_id,
        event.instance_id,
        Stage.INGEST,
        TraceStatus.SUCCEEDED,
        at=at or event.received_at,
        summary="Received accessplanit updated (webhook)",
        flow=event.flow,
        trigger=event.trigger,
        original_execution_id=event.original_execution_id,
        email=event.identity.email,
        user_id=event.identity.accessplanit_user_id,
        data_in=event.fields,
        data_out=event.model_dump(mode="json"),
    )


MISSING_EMAIL = ErrorInfo(
    error_class="MissingEmail", message="User has no email address", permanent=True, field="Email"
)
