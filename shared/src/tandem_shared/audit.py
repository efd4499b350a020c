"""Operator actions in the trace: an `AuditRecord` as a trace record of stage `audit` (one execution per action),
for the console (which keeps its audit log from them) and for dashboards."""

from __future__ import annotations

from tandem_shared.contracts import AuditRecord, Stage, TraceRecord, TraceStatus
from tandem_shared.tracing import StepRecorder

# The instance an audit record names when the action was not about one instance (a login, a replay of a set).
NO_INSTANCE = "*"


def audit_trace(record: AuditRecord, instance_id: str | None = None) -> TraceRecord:
    step = StepRecorder(stage=Stage.AUDIT, execution_id=record.audit_id, instance_id=instance_id or NO_INSTANCE)
    status = TraceStatus.SUCCEEDED if record.outcome < 400 else TraceStatus.FAILED
    summary = f"{record.who} ({record.via}): {record.action} {record.target} answered {record.outcome}"
    return step.finish(status, summary, data_out=record.model_dump(mode="json"))
