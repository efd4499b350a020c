"""Executions as the console shows them, derived from trace records (pure).

An execution is every TraceRecord sharing an execution id. Its records are grouped into steps — the source step
(ingest, poller or replay), the mapper, and the writer (its retries included) — and a step's latest record says
where that step stands. The execution is:

- failed    if any step's latest record is failed or dead-lettered (a later success of that step clears it);
- held      else if any step's latest record is held (the instance is paused);
- pending   else if any step's latest record is retry_pending;
- succeeded otherwise (skipped steps, e.g. "no changes", count as done).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from tandem_shared.contracts import (
    ERASURE_SERVICES,
    ErasureAcknowledgement,
    Flow,
    Stage,
    TraceRecord,
    TraceStatus,
    Trigger,
)
from tandem_shared.contracts.erasure import by_service


class ExecutionStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    HELD = "held"
    PENDING = "pending"

    @property
    def dot(self) -> str:
        """The colour of the execution's circle in the console."""
        if self is ExecutionStatus.SUCCEEDED:
            return "green"
        if self is ExecutionStatus.FAILED:
            return "red"
        return "amber"


class Step(StrEnum):
    SOURCE = "source"
    MAPPER = "mapper"
    WRITER = "writer"


STEP_OF_STAGE: dict[Stage, Step] = {
    Stage.INGEST: Step.SOURCE,
    Stage.POLLER: Step.SOURCE,
    Stage.REPLAY: Step.SOURCE,
    Stage.ERASURE: Step.SOURCE,  # an acknowledgement is an execution of its own, with no other step
    Stage.MAPPER: Step.MAPPER,
    Stage.WRITER: Step.WRITER,
    Stage.RETRY: Step.WRITER,
}

SOURCE_STAGES = frozenset({Stage.INGEST, Stage.POLLER, Stage.REPLAY})
_FAILED = frozenset({TraceStatus.FAILED, TraceStatus.DEAD_LETTERED})


def chronological(records: Iterable[TraceRecord]) -> list[TraceRecord]:
    """Records in the order they happened; attempt breaks ties between records finished in the same instant."""
    return sorted(records, key=lambda r: (r.finished_at, r.attempt, r.started_at, r.record_id))


def latest_by_step(records: Iterable[TraceRecord]) -> dict[Step, TraceRecord]:
    latest: dict[Step, TraceRecord] = {}
    for record in chronological(records):
        latest[STEP_OF_STAGE[record.stage]] = record
    return latest


def decisive_record(records: Sequence[TraceRecord]) -> tuple[ExecutionStatus, TraceRecord]:
    """The execution's status and the record that decides it (the one a person should read first)."""
    latest = latest_by_step(records)
    ordered = [latest[step] for step in Step if step in latest]
    for statuses, status in (
        (_FAILED, ExecutionStatus.FAILED),
        ({TraceStatus.HELD}, ExecutionStatus.HELD),
        ({TraceStatus.RETRY_PENDING}, ExecutionStatus.PENDING),
    ):
        for record in ordered:
            if record.status in statuses:
                return status, record
    return ExecutionStatus.SUCCEEDED, chronological(records)[-1]


def derive_status(records: Sequence[TraceRecord]) -> ExecutionStatus:
    return decisive_record(records)[0]


def changes_detected(records: Sequence[TraceRecord]) -> bool | None:
    """What the trigger found: the mapper's latest verdict when there is one, else any step that saw changes."""
    mapper = latest_by_step(records).get(Step.MAPPER)
    if mapper is not None and mapper.changes_detected is not None:
        return mapper.changes_detected
    if any(r.changes_detected for r in records):
        return True
    if any(r.changes_detected is False for r in records):
        return False
    return None


def _first(values: Iterable[str | None]) -> str | None:
    return next((v for v in values if v), None)


@dataclass(frozen=True)
class ExecutionSummary:
    execution_id: str
    original_execution_id: str | None
    instance_id: str
    flow: Flow | None
    trigger: Trigger | None
    status: ExecutionStatus
    changes_detected: bool | None
    contact_email: str | None
    accessplanit_user_id: str | None
    summary: str
    error_message: str | None
    started_at: datetime
    finished_at: datetime
    record_count: int


def summarize(records: Sequence[TraceRecord]) -> ExecutionSummary:
    if not records:
        raise ValueError("an execution has at least one trace record")
    ordered = chronological(records)
    status, decisive = decisive_record(ordered)
    source = next((r for r in ordered if r.stage in SOURCE_STAGES), None)
    trigger = source.trigger if source is not None and source.trigger else next((r.trigger for r in ordered), None)
    return ExecutionSummary(
        execution_id=ordered[0].execution_id,
        original_execution_id=_first(r.original_execution_id for r in ordered),
        instance_id=ordered[0].instance_id,
        flow=next((r.flow for r in ordered if r.flow), None),
        trigger=trigger,
        status=status,
        changes_detected=changes_detected(ordered),
        contact_email=_first(r.contact_email for r in ordered),
        accessplanit_user_id=_first(r.accessplanit_user_id for r in ordered),
        summary=erasure_summary(ordered) if is_erasure(ordered) else decisive.summary,
        error_message=decisive.error.message
        if decisive.error is not None and status is not ExecutionStatus.SUCCEEDED
        else None,
        started_at=min(r.started_at for r in ordered),
        finished_at=max(r.finished_at for r in ordered),
        record_count=len(ordered),
    )


def is_erasure(records: Iterable[TraceRecord]) -> bool:
    """An erasure request's execution: the services' acknowledgements, named by the request id, and nothing else."""
    return all(record.stage is Stage.ERASURE for record in records)


def erasure_summary(records: Sequence[TraceRecord]) -> str:
    """How many services acknowledged the request, each counted once however many of its replicas did."""
    acks = by_service(
        ack for record in records if (ack := ErasureAcknowledgement.from_data_out(record.output.data_out)) is not None
    )
    missing = [service for service in ERASURE_SERVICES if service not in acks]
    summary = f"Erasure acknowledged by {len(ERASURE_SERVICES) - len(missing)} of {len(ERASURE_SERVICES)} services"
    return f"{summary}; waiting for {', '.join(missing)}" if missing else summary


def end_to_end_seconds(records: Sequence[TraceRecord], write: TraceRecord) -> float | None:
    """From the start of the execution's source step to the end of a successful write; None without a source."""
    if write.stage is not Stage.WRITER or write.status is not TraceStatus.SUCCEEDED:
        return None
    sources = [r.started_at for r in records if r.stage in SOURCE_STAGES]
    if not sources:
        return None
    return max(0.0, (write.finished_at - min(sources)).total_seconds())


def has_source_step(records: Iterable[TraceRecord]) -> bool:
    """Whether a stage that publishes changes (ingest, poller, replay) started the execution: only such an
    execution has a change on `tandem.changes` to replay. The trace's data is not read (it may be minimised)."""
    return any(record.stage in SOURCE_STAGES for record in records)
