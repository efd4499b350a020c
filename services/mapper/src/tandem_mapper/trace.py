"""The mapper's trace records, all made here: one step per change, finished by what happened to it.

A change's fields are traced as the instance maps them (`tandem_shared.privacy`): identity and mapped fields only.
"""

from __future__ import annotations

from tandem_mapper.domain.model import Decision
from tandem_shared.contracts import ChangeEvent, InstanceConfig, Stage, TraceRecord, TraceStatus
from tandem_shared.privacy import minimise_fields
from tandem_shared.tracing import StepRecorder


class MapperStep:
    """One change's step at the mapper: started when the mapper takes the change up, finished once."""

    def __init__(self, event: ChangeEvent, instance: InstanceConfig | None) -> None:
        self._event = event
        self._fields = minimise_fields(event.fields, event.source, instance)
        self._step = StepRecorder.about(Stage.MAPPER, event)

    def unknown_instance(self, why: str) -> TraceRecord:
        """`why`: a deleted instance or one never known (`tandem_shared.instances.missing_instance`)."""
        return self._step.finish(TraceStatus.SKIPPED, why)

    def held(self, summary: str) -> TraceRecord:
        return self._step.finish(TraceStatus.HELD, summary, data_in=self._fields)

    def discarded(self) -> TraceRecord:
        summary = "Discarded on resume (--discard-buffered): held while paused, never synced"
        return self._step.finish(TraceStatus.DISCARDED, summary, data_in=self._fields)

    def decided(self, decision: Decision) -> TraceRecord:
        for line in decision.logs:
            self._step.log("info", line)
        command = decision.command or decision.repair
        return self._step.finish(
            decision.status,
            decision.summary,
            data_in=self._fields,
            data_out=command.payload if command else None,
            error=decision.error,
            changes_detected=decision.changes_detected,
        )
