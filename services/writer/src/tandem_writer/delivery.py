"""One command record, delivered: written once, retried later, or dead-lettered — and traced either way.

`Delivery.handle` returns only once the outcome is durable: the change is written and recorded as applied, or the
command is on a retry tier or the dead-letter topic (acks=all). Only then may the caller commit the record's offset.
Infrastructure failures (Redis, Kafka) do not decide the outcome: the step is repeated until it succeeds, and a
cancelled handler leaves the record uncommitted, to be delivered again.

The layer knows nothing about the targets beyond the `Target` protocol.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from enum import StrEnum
from typing import Protocol, TypeVar

from pydantic import ValidationError

from tandem_shared.concurrency import Backoff
from tandem_shared.contracts import (
    ErrorInfo,
    Headers,
    InstanceConfig,
    Stage,
    SyncCommand,
    System,
    TraceRecord,
    TraceStatus,
    utcnow,
)
from tandem_shared.contracts.topics import COMMANDS_DLQ
from tandem_shared.instances import InstanceRegistry, missing_instance
from tandem_shared.kafka import Producer
from tandem_shared.kafka.partitioned import InboundRecord
from tandem_shared.logging import get_logger
from tandem_shared.metrics import DEAD_LETTERS, RETRIES, WRITER_OUTCOMES
from tandem_shared.redis.idempotency import ClaimState, IdempotencyStore
from tandem_shared.redis.state import RedisStateStore
from tandem_shared.tracing import StepRecorder, new_id, publish_trace
from tandem_writer.coalescing import Queued, coalesce
from tandem_writer.outcome import WriteOutcome
from tandem_writer.retry import Hop, Origin, RetryPolicy, forward_headers, header_attempt
from tandem_writer.targets.base import Target

log = get_logger("tandem.writer.delivery")

T = TypeVar("T")

# Added to another writer's remaining claim time before trying again, so the claim has surely expired.
CLAIM_MARGIN_S = 1.0


class Disposition(StrEnum):
    APPLIED = "applied"
    ALREADY_APPLIED = "already_applied"
    SUPERSEDED = "superseded"
    RETRY_PENDING = "retry_pending"
    DEFERRED = "deferred"
    DEAD_LETTERED = "dead_lettered"
    IGNORED = "ignored"


class RecordSink(Protocol):
    """Publishes one record and returns once the broker has it (acks=all)."""

    async def send(
        self, topic: str, value: bytes, *, key: bytes | None, partition: int, headers: dict[str, str]
    ) -> None: ...


def _origin(record: InboundRecord) -> Origin:
    return Origin(record.topic, record.partition, record.offset, record.timestamp_ms)


def _queued(record: InboundRecord) -> Queued:
    try:
        command = SyncCommand.model_validate_json(record.value or b"")
    except ValidationError:
        command = None
    return Queued(record.offset, record.key, command)


def _coalesced(command: SyncCommand, into: SyncCommand, disposition: Disposition) -> TraceRecord:
    step = StepRecorder(
        stage=Stage.WRITER,
        execution_id=command.execution_id,
        original_execution_id=command.original_execution_id,
        instance_id=command.instance_id,
        flow=command.flow,
        trigger=command.trigger,
        contact_email=command.identity.email,
        accessplanit_user_id=command.identity.accessplanit_user_id,
    )
    return step.finish(
        TraceStatus.SKIPPED,
        f"Superseded by a newer change to this contact, written together with it in one write (execution "
        f"{into.execution_id}: {disposition.value.replace('_', ' ')})",
        data_in=command.payload,
        changes_detected=True,
    )


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


class Delivery:
    def __init__(
        self,
        *,
        registry: InstanceRegistry,
        targets: Mapping[System, Target],
        store: IdempotencyStore,
        sink: RecordSink,
        tracer: Producer,
        policy: RetryPolicy,
        clock: Callable[[], datetime] = utcnow,
        backoff_s: tuple[float, float] = (0.2, 10.0),
        state: RedisStateStore | None = None,
    ) -> None:
        self._state = state
        self._registry = registry
        self._targets = targets
        self._store = store
        self._sink = sink
        self._tracer = tracer
        self._policy = policy
        self._clock = clock
        self._backoff_s = backoff_s

    async def close(self) -> None:
        if self._state is not None:
            await self._state.close()

    def is_orphan(self, record: InboundRecord) -> bool:
        """A record of an instance that no longer exists: it is only skipped, so it need not wait until due (a
        long delay at the head of a retry partition would otherwise hold up every instance's retries behind it)."""
        instance_id = record.headers.get(Headers.INSTANCE_ID)
        return instance_id is not None and self._registry.get(instance_id) is None

    def absorbable(self, head: InboundRecord, behind: Sequence[InboundRecord]) -> list[InboundRecord]:
        """The records queued behind `head` whose commands fold into its write (see tandem_writer.coalescing).

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
        for command in carried:
            await self._trace(_coalesced(command, newest, disposition))
        return disposition

    async def _handle_one(self, record: InboundRecord, *, coalesced: int = 0) -> Disposition:
        try:
            command = SyncCommand.model_validate_json(record.value or b"")
        except ValidationError as exc:
            return await self._dead_letter_unreadable(record, exc)
        on_retry_topic = self._policy.is_retry_topic(record.topic)
        # A record on the main topic starts a delivery afresh (a replay included); a retry tier says which attempt.
        attempt = (header_attempt(record.headers) or command.attempt) if on_retry_topic else 1
        if command.attempt != attempt:
            command = command.model_copy(update={"attempt": attempt})
        step = StepRecorder(
            stage=Stage.RETRY if on_retry_topic else Stage.WRITER,
            execution_id=command.execution_id,
            original_execution_id=command.original_execution_id,
            instance_id=command.instance_id,
            flow=command.flow,
            trigger=command.trigger,
            attempt=attempt,
            contact_email=command.identity.email,
            accessplanit_user_id=command.identity.accessplanit_user_id,
        )
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
            await self._trace(step.finish(TraceStatus.SKIPPED, missing_instance(self._registry, command.instance_id)))
            return Disposition.IGNORED
        target = self._targets.get(command.target)
        if target is None:
            await self._trace(step.finish(TraceStatus.SKIPPED, f"No writer for {command.target.label} yet"))
            return Disposition.IGNORED
        return await self._deliver(record, command, instance, target, step)

    async def _deliver(
        self, record: InboundRecord, command: SyncCommand, instance: InstanceConfig, target: Target, step: StepRecorder
    ) -> Disposition:
        token = new_id()
        claim = await self._durably("claim", lambda: self._store.claim(command, token))
        if claim.state is ClaimState.DONE:
            applied = f" at {_when(claim.applied_at)}" if claim.applied_at else ""
            await self._trace(
                step.finish(
                    TraceStatus.SKIPPED,
                    f"Skipped: already applied{applied} (idempotency key {command.idempotency_key[:12]}…)",
                    data_in=command.payload,
                    changes_detected=False,
                )
            )
            return Disposition.ALREADY_APPLIED
        if claim.state is ClaimState.BUSY:
            hop = self._policy.deferral(command.attempt, claim.wait_s + CLAIM_MARGIN_S, self._clock())
            error = ErrorInfo(
                error_class="ContactBusy",
                message="Another write for this contact is in flight (or its writer stopped mid-write)",
                permanent=False,
            )
            await self._forward(record, command, hop, error)
            await self._trace(
                step.finish(
                    TraceStatus.RETRY_PENDING,
                    f"Retry pending (attempt {hop.attempt} of {self._policy.max_attempts}, "
                    f"next at {_when(hop.not_before)}): another write for this contact is in flight",
                    data_in=command.payload,
                    error=error,
                )
            )
            return Disposition.DEFERRED
        if claim.last_applied is not None and command.source_occurred_at < claim.last_applied:
            await self._durably("release", lambda: self._store.release(command, token))
            await self._trace(
                step.finish(
                    TraceStatus.SKIPPED,
                    f"Superseded: a newer change to this contact (from {_when(claim.last_applied)}) was applied "
                    f"already; this one (from {_when(command.source_occurred_at)}) is not written",
                    data_in=command.payload,
                    changes_detected=False,
                )
            )
            return Disposition.SUPERSEDED

        outcome = await self._write(target, command, instance)
        if outcome.ok:
            # Applied, and what the target now holds (the mapper's change detection and echo suppression read it).
            await self._durably("mark applied", lambda: self._store.mark_done(command, token, state=self._state))
            await self._trace(
                step.finish(
                    TraceStatus.SUCCEEDED,
                    outcome.summary,
                    data_in=command.payload,
                    data_out=outcome.response,
                    changes_detected=True,
                )
            )
            return Disposition.APPLIED

        await self._durably("release", lambda: self._store.release(command, token))
        error = outcome.error or ErrorInfo(error_class="WriteFailed", message=outcome.summary, permanent=False)
        retry = None if error.permanent else self._policy.after_failure(command.attempt, self._clock())
        if retry is None:
            await self._dead_letter(record, command, error)
            reason = (
                "permanent error, not retried"
                if error.permanent
                else f"gave up after {command.attempt} of {self._policy.max_attempts} attempts"
            )
            await self._trace(
                step.finish(
                    TraceStatus.DEAD_LETTERED,
                    f"Dead-lettered ({reason}): {error.message}",
                    data_in=command.payload,
                    data_out=outcome.response,
                    error=error,
                )
            )
            return Disposition.DEAD_LETTERED
        await self._forward(record, command, retry, error)
        await self._trace(
            step.finish(
                TraceStatus.RETRY_PENDING,
                f"Retry pending (attempt {retry.attempt} of {self._policy.max_attempts}, "
                f"next at {_when(retry.not_before)}): {error.message}",
                data_in=command.payload,
                data_out=outcome.response,
                error=error,
            )
        )
        return Disposition.RETRY_PENDING

    async def _write(self, target: Target, command: SyncCommand, instance: InstanceConfig) -> WriteOutcome:
        try:
            return await target.write(command, instance)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a target bug must not stop the partition: retried, then dead-lettered
            log.exception("target raised instead of returning an outcome", target=command.target.value)
            message = f"{command.target.label} write failed: {exc or type(exc).__name__}"
            return WriteOutcome(
                False, message, error=ErrorInfo(error_class=type(exc).__name__, message=message, permanent=False)
            )

    async def _forward(self, record: InboundRecord, command: SyncCommand, hop: Hop, error: ErrorInfo) -> None:
        headers = forward_headers(
            record.headers,
            _origin(record),
            attempt=hop.attempt,
            error=error,
            now=self._clock(),
            not_before_at=hop.not_before,
        )
        value = command.model_copy(update={"attempt": hop.attempt}).model_dump_json().encode()
        await self._durably(
            f"forward to {hop.topic}",
            lambda: self._sink.send(hop.topic, value, key=record.key, partition=record.partition, headers=headers),
        )
        RETRIES.labels(target=command.target.value).inc()

    async def _dead_letter(self, record: InboundRecord, command: SyncCommand, error: ErrorInfo) -> None:
        headers = forward_headers(
            record.headers, _origin(record), attempt=command.attempt, error=error, now=self._clock(), not_before_at=None
        )
        value = command.model_dump_json().encode()
        await self._durably(
            "dead-letter",
            lambda: self._sink.send(COMMANDS_DLQ, value, key=record.key, partition=record.partition, headers=headers),
        )
        DEAD_LETTERS.labels(target=command.target.value).inc()

    async def _dead_letter_unreadable(self, record: InboundRecord, exc: ValidationError) -> Disposition:
        error = ErrorInfo(
            error_class="InvalidCommand",
            message=f"Not a valid SyncCommand: {exc.error_count()} error(s), first: {exc.errors()[0]['msg']}",
            permanent=True,
        )
        headers = forward_headers(
            record.headers,
            _origin(record),
            attempt=header_attempt(record.headers) or 1,
            error=error,
            now=self._clock(),
            not_before_at=None,
        )
        await self._durably(
            "dead-letter",
            lambda: self._sink.send(
                COMMANDS_DLQ, record.value or b"", key=record.key, partition=record.partition, headers=headers
            ),
        )
        log.error("unreadable command dead-lettered", where=record.where, error=error.message)
        execution_id, instance_id = record.headers.get(Headers.EXECUTION_ID), record.headers.get(Headers.INSTANCE_ID)
        if execution_id and instance_id:
            step = StepRecorder(stage=Stage.WRITER, execution_id=execution_id, instance_id=instance_id)
            await self._trace(step.finish(TraceStatus.DEAD_LETTERED, f"Dead-lettered: {error.message}", error=error))
        return Disposition.DEAD_LETTERED

    async def _trace(self, record: TraceRecord) -> None:
        await self._durably("trace", lambda: publish_trace(self._tracer, record))
        target = record.flow.target.value if record.flow is not None else "unknown"
        WRITER_OUTCOMES.labels(target=target, status=record.status.value).inc()

    async def _durably(self, what: str, action: Callable[[], Awaitable[T]]) -> T:
        """Repeat an infrastructure step until it succeeds; only cancellation (shutdown, rebalance) stops it."""
        backoff = Backoff(*self._backoff_s, jitter=False)
        while True:
            try:
                return await action()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("delivery step failed; retrying", step=what, error=str(exc) or type(exc).__name__)
                await asyncio.sleep(backoff.next_delay())
