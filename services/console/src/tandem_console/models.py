"""What the JSON API returns (and the pages render)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from tandem_console.domain import ExecutionStatus, ExecutionSummary
from tandem_shared.contracts import (
    Direction,
    ErrorInfo,
    Flow,
    InstanceConfig,
    LogLine,
    Stage,
    StepOutput,
    TraceRecord,
    TraceStatus,
    Trigger,
)
from tandem_shared.privacy import mask


class ExecutionOut(BaseModel):
    execution_id: str
    original_execution_id: str | None
    is_original: bool
    instance_id: str
    flow: Flow | None
    flow_label: str | None
    trigger: Trigger | None
    status: ExecutionStatus
    dot: str
    changes_detected: bool | None
    contact_email: str | None
    accessplanit_user_id: str | None
    summary: str
    error_message: str | None
    started_at: datetime
    finished_at: datetime
    duration_ms: float
    record_count: int

    @classmethod
    def of(cls, e: ExecutionSummary) -> ExecutionOut:
        return cls(
            execution_id=e.execution_id,
            original_execution_id=e.original_execution_id,
            is_original=e.original_execution_id is None,
            instance_id=e.instance_id,
            flow=e.flow,
            flow_label=e.flow.label if e.flow else None,
            trigger=e.trigger,
            status=e.status,
            dot=e.status.dot,
            changes_detected=e.changes_detected,
            contact_email=e.contact_email,
            accessplanit_user_id=e.accessplanit_user_id,
            summary=e.summary,
            error_message=e.error_message,
            started_at=e.started_at,
            finished_at=e.finished_at,
            duration_ms=round((e.finished_at - e.started_at).total_seconds() * 1000, 3),
            record_count=e.record_count,
        )


class ExecutionPage(BaseModel):
    items: list[ExecutionOut]
    next_cursor: str | None


class StepOut(BaseModel):
    record_id: str
    stage: Stage
    status: TraceStatus
    summary: str
    attempt: int
    changes_detected: bool | None
    started_at: datetime
    finished_at: datetime
    duration_ms: float
    output: StepOutput
    logs: list[LogLine]
    error: ErrorInfo | None

    @classmethod
    def of(cls, r: TraceRecord, *, errors_only: bool = False, masked: frozenset[str] = frozenset()) -> StepOut:
        """`masked`: lower-cased field names whose values are not shown (`ConsoleSettings.masked_fields`)."""
        output = r.output
        if masked:
            output = StepOutput(data_in=mask(output.data_in, masked), data_out=mask(output.data_out, masked))
        return cls(
            record_id=r.record_id,
            stage=r.stage,
            status=r.status,
            summary=r.summary,
            attempt=r.attempt,
            changes_detected=r.changes_detected,
            started_at=r.started_at,
            finished_at=r.finished_at,
            duration_ms=r.duration_ms,
            output=output,
            logs=[line for line in r.logs if line.level == "error"] if errors_only else list(r.logs),
            error=r.error,
        )


class LogOut(BaseModel):
    at: datetime
    level: str
    stage: Stage
    attempt: int
    message: str


class ExecutionDetail(BaseModel):
    execution: ExecutionOut
    steps: list[StepOut]
    logs: list[LogOut]
    errors_only: bool
    retries_and_replays: list[ExecutionOut]
    replayable: bool


class TimelineEntry(BaseModel):
    execution: ExecutionOut
    steps: list[StepOut]


class Timeline(BaseModel):
    email: str | None
    accessplanit_user_id: str | None
    entries: list[TimelineEntry]


class InstanceSummary(BaseModel):
    """An instance on `tandem.instances`, or one deleted from it (state "deleted": its configuration is gone,
    its executions are kept; version and direction are then unknown)."""

    id: str
    name: str
    state: str
    paused: bool
    version: int | None
    direction: Direction | None
    last_run_at: datetime | None
    counts: dict[ExecutionStatus, int]
    deleted_at: datetime | None = None

    @classmethod
    def of(
        cls, config: InstanceConfig, last_run: datetime | None, counts: dict[ExecutionStatus, int]
    ) -> InstanceSummary:
        return cls(
            id=config.id,
            name=config.name,
            state="paused" if config.paused else "running",
            paused=config.paused,
            version=config.version,
            direction=config.direction,
            last_run_at=last_run,
            counts=counts,
        )

    @classmethod
    def deleted(
        cls, instance_id: str, deleted_at: datetime, last_run: datetime | None, counts: dict[ExecutionStatus, int]
    ) -> InstanceSummary:
        return cls(
            id=instance_id,
            name=instance_id,
            state="deleted",
            paused=False,
            version=None,
            direction=None,
            last_run_at=last_run,
            counts=counts,
            deleted_at=deleted_at,
        )


class PauseOut(BaseModel):
    changed: bool
    instance: InstanceSummary


class ForgetIn(BaseModel):
    email: str = Field(min_length=3, max_length=320, description="The contact's address.")
    instance_id: str | None = Field(default=None, description="Only this instance's stores; none: every instance.")


class ForgetOut(BaseModel):
    request_id: str = Field(description="Each service's acknowledgement is an execution with this id (stage erasure).")
    scope: str


class ReplayOut(BaseModel):
    replayed_execution_id: str
    execution_id: str
    event_id: str


class ReplaySkipped(BaseModel):
    execution_id: str
    reason: str


class ReplaySetOut(BaseModel):
    matched: int
    replayed: list[ReplayOut]
    skipped: list[ReplaySkipped]


class ConsumerStatus(BaseModel):
    topic: str
    lag: int | None
