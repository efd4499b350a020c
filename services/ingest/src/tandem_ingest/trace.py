"""Ingest's trace records, all made here: one step per change received, one per poll round that found something.

Every exit of the webhook routes and the poller that leaves a trace finishes one of these steps.
"""

from __future__ import annotations

from collections.abc import Sequence

from tandem_ingest.domain.cursor import Position
from tandem_ingest.domain.poll_report import PollReport
from tandem_shared.contracts import ChangeEvent, ErrorInfo, InstanceConfig, Stage, TraceRecord, TraceStatus, Trigger
from tandem_shared.privacy import minimise_event, minimise_fields
from tandem_shared.tracing import StepRecorder, new_id


class ReceiptStep:
    """One change received (by a webhook, or found by the poller): started before it is sent to Kafka, so the
    step's duration is the time it took to store it; finished once Kafka has it.

    The record keeps the identity and the fields `instance` maps (`tandem_shared.privacy`): none of the other
    fields the vendor sent, only how many there were."""

    def __init__(self, event: ChangeEvent, stage: Stage, instance: InstanceConfig | None) -> None:
        self._event = event
        self._instance = instance
        self._step = StepRecorder.about(stage, event)

    def stored(self, notes: Sequence[str] = ()) -> TraceRecord:
        event = self._event
        for note in notes:
            self._step.log("info", note)
        self._step.log("info", f"{event.source.label} {event.kind.value} event {event.event_id} accepted")
        return self._step.finish(
            TraceStatus.SUCCEEDED,
            f"Received {event.source.label} {event.kind.value} ({event.trigger.value})",
            data_in=minimise_fields(event.fields, event.source, self._instance),
            data_out=minimise_event(event, self._instance),
        )


class PollStep:
    """One catch-up poll round of one instance, as an execution of its own."""

    def __init__(self, instance_id: str) -> None:
        self._step = StepRecorder(
            stage=Stage.POLLER, execution_id=new_id(), instance_id=instance_id, trigger=Trigger.POLL
        )

    def finished(self, report: PollReport) -> TraceRecord:
        for problem in report.skipped:
            self._step.log("warning", f"not synced: {problem}")
        if report.stopped_early:
            self._step.log("info", f"stopped early: {report.stopped_early}")
        return self._step.finish(
            TraceStatus.SUCCEEDED if not report.skipped else TraceStatus.FAILED,
            report.summary(),
            data_out={
                "from": _position(report.started_from),
                "cursor_before": _position(report.cursor_before),
                "cursor_after": _position(report.cursor_after),
                "published_event_ids": report.published,
                "deferred_deliveries_answered": report.deferred_settled,
                "deferred_users_read_alone": report.read_alone,
            },
            changes_detected=bool(report.published),
        )

    def failed(self, error: ErrorInfo) -> TraceRecord:
        verdict = "needs attention" if error.permanent else "will be retried next round"
        return self._step.finish(TraceStatus.FAILED, f"Catch-up poll failed ({verdict})", error=error)


class DeferralStep:
    """An unsigned delivery answered before its user was read: the catch-up poll reads it (`catch_up`)."""

    def __init__(self, instance_id: str, user_id: str) -> None:
        self._user_id = user_id
        self._step = StepRecorder(
            stage=Stage.INGEST,
            execution_id=new_id(),
            instance_id=instance_id,
            trigger=Trigger.WEBHOOK,
            accessplanit_user_id=user_id,
        )

    @property
    def execution_id(self) -> str:
        return self._step.execution_id

    def deferred(self, reason: str) -> TraceRecord:
        self._step.log("info", reason)
        return self._step.finish(
            TraceStatus.SUCCEEDED,
            f"Delivery for accessplanit user {self._user_id} deferred to the catch-up read",
            data_out={"accessplanit_user_id": self._user_id},
        )


def _position(position: Position | None) -> dict[str, str | None] | None:
    return None if position is None else position.to_trace()
