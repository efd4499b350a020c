"""TraceRecord: one step of one execution, published by every stage to `tandem.trace`.

An execution is all records sharing an execution id; retries and replays carry the id of the execution they
repeat in `original_execution_id`. Consumers (the console, dashboards) rebuild executions from these records.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field

from tandem_shared.contracts.common import Contract, Flow, Trigger


class Stage(StrEnum):
    INGEST = "ingest"
    POLLER = "poller"
    MAPPER = "mapper"
    WRITER = "writer"
    RETRY = "retry"
    REPLAY = "replay"
    # A service's acknowledgement of an erasure request (`ErasureRequest`): what it removed, never the address.
    ERASURE = "erasure"
    # An operator action (`AuditRecord`): who did what, when, and how it was answered.
    AUDIT = "audit"


class TraceStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    # Waiting while the instance is paused (or behind changes that were); processed in order on resume.
    HELD = "held"
    # Held while paused, then dropped on an operator's `resume --discard-buffered`.
    DISCARDED = "discarded"
    RETRY_PENDING = "retry_pending"
    DEAD_LETTERED = "dead_lettered"


LogLevel = Literal["debug", "info", "warning", "error"]


class LogLine(Contract):
    at: datetime
    level: LogLevel
    message: str


class ErrorInfo(Contract):
    error_class: str
    message: str
    permanent: bool
    field: str | None = None


class StepOutput(Contract):
    data_in: dict[str, Any] | None = None
    data_out: dict[str, Any] | None = None


class TraceRecord(Contract):
    record_id: str
    execution_id: str
    original_execution_id: str | None = None
    instance_id: str
    flow: Flow | None = None
    trigger: Trigger | None = None
    stage: Stage
    status: TraceStatus
    summary: str = Field(description="One line for a person: what this step did.")
    changes_detected: bool | None = None
    contact_email: str | None = None
    accessplanit_user_id: str | None = None
    attempt: int = 1
    output: StepOutput = Field(default_factory=StepOutput)
    logs: list[LogLine] = Field(default_factory=list)
    error: ErrorInfo | None = None
    started_at: datetime
    finished_at: datetime
    duration_ms: float
