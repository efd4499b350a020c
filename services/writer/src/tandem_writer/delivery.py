"""One command record, delivered: written once, retried later, or dead-lettered — and traced either way.

`Delivery.handle` returns only once the outcome is durable: the change is written and recorded as applied, or the
command is on a retry tier or the dead-letter topic (acks=all). Only then may the caller commit the record's offset.
Infrastructure failures (Redis, Kafka) do not decide the outcome: the step is repeated until it succeeds
(`tandem_writer.durable`), and a cancelled handler leaves the record uncommitted, to be delivered again.

The service works on ports only (`Producer`, `IdempotencyStore`, `StateStore`, `Target`, `InstanceRegistry`); what
becomes of a command is decided in `tandem_writer.domain.decisions`, and every trace record is finished by
`tandem_writer.trace`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TypeVar

from pydantic import ValidationError

from tandem_shared.contracts import Headers, InstanceConfig, Stage, SyncCommand, System, utcnow
from tandem_shared.instances import InstanceRegistry, missing_instance
from tandem_shared.kafka import Producer
from tandem_shared.kafka.partitioned import InboundRecord
from tandem_shared.logging import get_logger
from tandem_shared.redis.idempotency import ClaimState, IdempotencyStore
from tandem_shared.redis.state import StateStore
from tandem_shared.sync.rules import abandoned_marks
from tandem_shared.tracing import StepRecorder, new_id
from tandem_writer.domain import decisions
from tandem_writer.domain.coalescing import Queued, coalesce
from tandem_writer.domain.decisions import Disposition, Verdict
from tandem_writer.domain.outcome import WriteOutcome
from tandem_writer.domain.retry import RetryPolicy, header_attempt
from tandem_writer.durable import DATA_ERRORS, PoisonRecord, durably
from tandem_writer.forwarding import Forwarder
from tandem_writer.targets.base import Target
from tandem_writer.trace import WriterTrace, command_step, record_step

log = get_logger("tandem.writer.delivery")

T = TypeVar("T")


def _queued(record: InboundRecord) -> Queued:
    try:
        command = SyncCommand.model_validate_json(record.value or b"")
    except ValidationError:
        command = None
    return Queued(record.offset, record.key, command)


class Delivery:
    def __init__(
        self,
        *,
        registry: InstanceRegistry,
        targets: Mapping[System, Target],
        store: IdempotencyStore,
        producer: Producer,
        policy: RetryPolicy,
        clock: Callable[[], datetime] = utcnow,
        backoff_s: tuple[float, float] = (0.2, 10.0),
        state: StateStore | None = None,
    ) -> None:
        """`state`: where a successful write records what the target now holds (the mapper reads it)."""
        self._registry = registry
        self._targets = targets
        self._store = store
        self._state = state
        self._policy = policy
        self._clock = clock
        self._backoff_s = backoff_s
        self._forward = Forwarder(producer, clock, backoff_s)
        self._trace = WriterTrace(producer, backoff_s)

    def is_orphan(self, record: InboundRecord) -> bool:
        """A record of an instance that no longer exists: it is only skipped, so it need not wait until due (a
        long delay at the head of a retry partition would otherwise hold up every instance's retries behind it)."""
        instance_id = record.headers.get(Headers.INSTANCE_ID)
        return instance_id is not None and self._registry.get(instance_id) is None

    def absorbable(self, head: InboundRecord, behind: Sequence[InboundRecord]) -> list[InboundRecord]:
        """The records queued behind `head` whose commands fold into its write (see tandem_writer.domain.coalescing).

        Only on the main topic: a retry carries its own attempt count and schedule.
        """
        if head.key is None or self._policy.is_retry_topic(head.topic):
            return []
        same = [r for r in behind if r.key == head.key]
        if not same:
            return []
        folded = coalesce(_queued(head), [_queued(r) for r in same])
        if folded is None:
            return []
        offsets = {q.offset for q in folded.absorbed}
        return [r for r in same if r.offset in offsets]

    async def handle(self, record: InboundRecord, absorbed: Sequence[InboundRecord] = ()) -> Disposition:
        """Delivers `record`; with `absorbed` (from `absorbable`), one write carries all their changes."""
        folded = coalesce(_queued(record), [_queued(r) for r in absorbed]) if absorbed else None
        if folded is None:
            return await self._handle_one(record)
        head = _queued(record).command
        assert head is not None
        carried = [head, *(q.command for q in folded.absorbed[:-1] if q.command is not None)]
        newest = folded.command
        headers = {
            **record.headers,
            Headers.EXECUTION_ID: newest.execution_id,
            Headers.IDEMPOTENCY_KEY: newest.idempotency_key,
        }
        value = newest.model_dump_json().encode()
        disposition = await self._handle_one(replace(record, value=value, headers=headers), coalesced=len(carried))
        # The carried commands' values the newest overrode will never be written, nor any once the write is over:
        # their pending marks go. Those the write carries stay while it is on its way to a retry.
        retried = newest if disposition in (Disposition.RETRY_PENDING, Disposition.DEFERRED) else None
        for command in carried:
            await self._clear_abandoned(command, retried)
            await self._trace.finish(command_step(command), decisions.coalesced_into(command, newest, disposition))
        return disposition

    async def _handle_one(self, record: InboundRecord, *, coalesced: int = 0) -> Disposition:
        try:
            command = SyncCommand.model_validate_json(record.value or b"")
        except ValidationError as exc:
            return await self._dead_letter_unreadable(record, decisions.unreadable(exc))
        on_retry_topic = self._policy.is_retry_topic(record.topic)
        # A record on the main topic starts a delivery afresh (a replay included); a retry tier says which attempt.
        attempt = (header_attempt(record.headers) or command.attempt) if on_retry_topic else 1
        if command.attempt != attempt:
            command = command.model_copy(update={"attempt": attempt})
        step = command_step(command, stage=Stage.RETRY if on_retry_topic else Stage.WRITER, attempt=attempt)
        if on_retry_topic:
            step.log("info", f"Attempt {attempt} of {self._policy.max_attempts}, from {record.where}")
        if Headers.REPLAYED_FROM in record.headers:
            step.log("info", f"Replayed from {record.headers[Headers.REPLAYED_FROM]}")
        if coalesced:
            step.log(
                "info",
                f"Coalesced with {coalesced} earlier change(s) to this contact queued before it: this one write "
                "carries all their fields, the latest value of each",
            )
        instance = self._registry.get(command.instance_id)
        if instance is None:
            return await self._conclude(
                record, command, step, decisions.unknown_instance(missing_instance(self._registry, command.instance_id))
            )
        target = self._targets.get(command.target)
        if target is None:
            return await self._conclude(record, command, step, decisions.no_writer(command.target))
        return await self._deliver(record, command, instance, target, step)

    async def _deliver(
        self, record: InboundRecord, command: SyncCommand, instance: InstanceConfig, target: Target, step: StepRecorder
    ) -> Disposition:
        token = new_id()
        landed: list[SyncCommand] = []
        try:
            verdict = await self._claim_and_write(command, instance, target, token, landed)
        except PoisonRecord as poison:
            log.error("delivery step failed on the record's data; dead-lettered", where=record.where, step=poison.step)
            # Whatever the claim holds is given back; a release that fails on the data too leaves it to expire.
            try:
                await self._step("release", lambda: self._store.release(command, token))
            except PoisonRecord:
                pass
            verdict = decisions.poisoned(command, str(poison))
        if decisions.delivery_over(verdict):
            await self._clear_abandoned(command, landed[0] if landed else None)
        return await self._conclude(record, command, step, verdict)

    async def _clear_abandoned(self, command: SyncCommand, landed: SyncCommand | None) -> None:
        """The command's pending marks whose values will never be written (`rules.abandoned_marks`) are cleared,
        so the mapper does not take a later change of those fields for one raced by this write."""
        abandoned = abandoned_marks(command, landed)
        state = self._state
        if abandoned is None or state is None:
            return

        try:
            await self._step("clear pending marks", lambda: state.clear_pending(abandoned))
        except PoisonRecord:
            # Only a hint for the mapper, and it stops counting after IN_FLIGHT_MS anyway: never worth a dead letter.
            log.warning("pending marks not cleared", command_id=command.command_id)

    async def _claim_and_write(
        self, command: SyncCommand, instance: InstanceConfig, target: Target, token: str, landed: list[SyncCommand]
    ) -> Verdict:
        """`landed` receives what was written and recorded, if anything was."""
        claim = await self._step("claim", lambda: self._store.claim(command, token))
        if claim.state is ClaimState.DONE:
            return decisions.already_applied(command, claim.applied_at)
        if claim.state is ClaimState.BUSY:
            return decisions.contact_busy(command, self._policy, claim.wait_s, claim.held_s, self._clock())
        superseded = decisions.superseded(command, claim.last_applied)
        if superseded is not None:
            await self._step("release", lambda: self._store.release(command, token))
            return superseded

        outcome = await self._write(target, command, instance)
        if outcome.ok:
            # Applied, and what the target now holds (the mapper's change detection and echo suppression read it).
            written = outcome.written or command
            state = self._state if outcome.wrote else None
            await self._step("mark applied", lambda: self._store.mark_done(written, token, state=state))
            if outcome.wrote:
                landed.append(written)
        else:
            await self._step("release", lambda: self._store.release(command, token))
        return decisions.after_write(command, outcome, self._policy, self._clock())

    async def _step(self, what: str, action: Callable[[], Awaitable[T]]) -> T:
        """A Redis step of the delivery: repeated while Redis fails, PoisonRecord when the record's data does."""
        return await durably(what, action, self._backoff_s, poison_on=DATA_ERRORS)

    async def _write(self, target: Target, command: SyncCommand, instance: InstanceConfig) -> WriteOutcome:
        try:
            return await target.write(command, instance)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("target raised instead of returning an outcome", target=command.target.value)
            return decisions.target_raised(command, exc)

    async def _conclude(
        self, record: InboundRecord, command: SyncCommand, step: StepRecorder, verdict: Verdict
    ) -> Disposition:
        """Carries out the verdict's forward (if any), then traces it: every exit of a readable command ends here."""
        if verdict.retry is not None:
            assert verdict.error is not None
            await self._forward.retry(record, command, verdict.retry, verdict.error)
        elif verdict.dead_letter:
            assert verdict.error is not None
            await self._forward.dead_letter(record, command, verdict.error)
        await self._trace.finish(step, verdict)
        return verdict.disposition

    async def _dead_letter_unreadable(self, record: InboundRecord, verdict: Verdict) -> Disposition:
        assert verdict.error is not None
        attempt = header_attempt(record.headers) or 1
        await self._forward.dead_letter_value(record, record.value or b"", attempt=attempt, error=verdict.error)
        log.error("unreadable command dead-lettered", where=record.where, error=verdict.error.message)
        execution_id, instance_id = record.headers.get(Headers.EXECUTION_ID), record.headers.get(Headers.INSTANCE_ID)
        if execution_id and instance_id:
            await self._trace.finish(record_step(execution_id, instance_id), verdict)
        return verdict.disposition
