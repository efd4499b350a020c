"""The writer's trace records, from one place: a step opened per delivery, finished from its `Verdict`."""

from __future__ import annotations

from tandem_shared.contracts import Stage, SyncCommand
from tandem_shared.kafka import Producer
from tandem_shared.metrics import WRITER_OUTCOMES
from tandem_shared.privacy import minimise_response
from tandem_shared.tracing import StepRecorder, publish_trace
from tandem_writer.domain.decisions import Verdict
from tandem_writer.durable import durably


def command_step(command: SyncCommand, *, stage: Stage = Stage.WRITER, attempt: int = 1) -> StepRecorder:
    """The step of one command: on the command topic (WRITER) or a retry tier (RETRY)."""
    return StepRecorder.about(stage, command, attempt=attempt)


def record_step(execution_id: str, instance_id: str) -> StepRecorder:
    """The step of a record that is not a readable command: only its headers say whose it is."""
    return StepRecorder(stage=Stage.WRITER, execution_id=execution_id, instance_id=instance_id)


class WriterTrace:
    """Publishes each finished step to `tandem.trace` (repeated until the producer takes it) and counts it."""

    def __init__(self, producer: Producer, backoff_s: tuple[float, float]) -> None:
        self._producer = producer
        self._backoff_s = backoff_s

    async def finish(self, step: StepRecorder, verdict: Verdict) -> None:
        """The vendor's answer is traced cut to what was written (`data_in`, the command's mapped payload)."""
        record = step.finish(
            verdict.status,
            verdict.summary,
            data_in=verdict.data_in,
            data_out=minimise_response(verdict.data_out, verdict.data_in),
            error=verdict.error,
            changes_detected=verdict.changes_detected,
        )
        await durably("trace", lambda: publish_trace(self._producer, record), self._backoff_s)
        target = record.flow.target.value if record.flow is not None else "unknown"
        WRITER_OUTCOMES.labels(target=target, status=record.status.value).inc()
