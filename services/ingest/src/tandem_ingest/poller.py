"""Catch-up poller: changes the webhooks missed (Tandem was down, a delivery was lost) still reach Kafka.

Per instance it pages `$filter=DateUpdated gt '<cursor>'` in (DateUpdated, ID) order and submits each user through
the same Intake as the webhook route. Webhook and poller produce the same event id for the same change, so what the
webhook already delivered is recognized and not published again. The cursor lives in Redis and only moves past a
record once that record is in Kafka, so a crash or an outage costs a re-read, never a change.

Runs inside ingest (it needs the Intake, the publisher and the instance registry ingest already has). A lease per
instance lets several ingest replicas run it while only one polls a given instance. The cursor maths are
`domain.cursor`, the Redis stores `poll_state`, the trace records `trace.PollStep`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from tandem_ingest.accessplanit_changes import UserReader, own_write_marks
from tandem_ingest.dedupe import Claim, ClaimsUnavailable
from tandem_ingest.domain.cursor import Cursor, Position, record_position, round_start
from tandem_ingest.domain.errors import InvalidPayload
from tandem_ingest.domain.normalize.accessplanit import record_kind, removed_user_event, user_event
from tandem_ingest.domain.poll_report import PollReport
from tandem_ingest.intake import Intake
from tandem_ingest.publishing import KafkaUnavailable
from tandem_ingest.trace import PollStep
from tandem_shared.contracts import (
    ChangeEvent,
    Direction,
    ErrorInfo,
    InstanceConfig,
    Stage,
    TraceRecord,
    Trigger,
    utcnow,
)
from tandem_shared.instances import InstanceRegistry
from tandem_shared.logging import get_logger
from tandem_shared.redis.deferred import Deferral
from tandem_shared.tracing import new_id
from tandem_shared.vendors.accessplanit.client import AccessplanitError

log = get_logger("tandem.ingest.poller")

TraceSink = Callable[[TraceRecord], Awaitable[None]]


class ChangedUsers(Protocol):
    """accessplanit's users in (DateUpdated, ID) order; both raise AccessplanitError."""

    async def newest(self, instance: InstanceConfig) -> Position: ...

    async def page(self, instance: InstanceConfig, after: Position, size: int) -> list[dict[str, Any]]: ...


class CursorStore(Protocol):
    async def load(self, instance_id: str) -> Cursor | None: ...

    async def save(self, instance_id: str, cursor: Cursor) -> None: ...


class InstanceLocks(Protocol):
    async def hold(self, instance_id: str) -> bool:
        """True while this replica may poll the instance (taken or renewed); False when another one does."""
        ...

    async def release_all(self) -> None: ...


class DeferredUsers(Protocol):
    """Users whose unsigned delivery was answered before they were read (`catch_up`); raise on Redis trouble."""

    async def defer(self, instance_id: str, user_id: str, arrived_ms: int) -> None: ...

    async def due(self, instance_id: str, arrived_before_ms: int, limit: int) -> list[Deferral]: ...

    async def settle(self, instance_id: str, user_ids: Sequence[str], read_at_ms: int) -> int:
        """Drop the users' deferrals that arrived no later than `read_at_ms`; how many were dropped."""
        ...


@dataclass(frozen=True)
class PollerConfig:
    interval_s: float
    page_size: int
    max_pages: int
    overlap_s: float
    # Rounds never follow each other closer than this (a woken round, a round continuing a long backlog).
    wake_min_interval_s: float = 5.0
    # Deferrals are judged by the clocks of the replicas that took them: a read settles a delivery only when it
    # started this much later than the delivery arrived.
    clock_skew_s: float = 1.0


def polls(instance: InstanceConfig) -> bool:
    """Which instances are polled: accessplanit changes matter only when the instance syncs them to Mailchimp."""
    return instance.direction in (Direction.BOTH, Direction.ACCESSPLANIT_TO_MAILCHIMP)


class AccessplanitPoller:
    def __init__(
        self,
        *,
        registry: InstanceRegistry,
        users: ChangedUsers,
        intake: Intake,
        cursors: CursorStore,
        locks: InstanceLocks,
        trace: TraceSink,
        config: PollerConfig,
        deferred: DeferredUsers | None = None,
        reader: UserReader | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`deferred` and `reader` serve deliveries deferred to the catch-up read (`catch_up`); without them the
        poller only catches up on what the webhooks missed."""
        self._registry = registry
        self._users = users
        self._intake = intake
        self._cursors = cursors
        self._locks = locks
        self._trace = trace
        self._config = config
        self._deferred = deferred
        self._reader = reader
        self._clock = clock
        self._skew_ms = int(config.clock_skew_s * 1000)
        self._woken = asyncio.Event()
        self._last_error: dict[str, str] = {}

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def wake(self, instance_id: str) -> None:
        """A delivery of this instance was deferred to the catch-up read: poll soon rather than at the interval
        (`wake_min_interval_s` after the previous round, so a burst of deliveries costs a page, not a round each)."""
        self._woken.set()

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            reports = await self.poll_all()
            if not any(report.more_to_read for report in reports):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._woken.wait(), self._config.interval_s)
            self._woken.clear()
            await asyncio.sleep(max(0.0, self._config.wake_min_interval_s - (time.monotonic() - started)))

    async def poll_all(self) -> list[PollReport]:
        instances = [i for i in self._registry.all() if polls(i)]
        results = await asyncio.gather(*(self._poll_guarded(i) for i in instances))
        return [r for r in results if r is not None]

    async def _poll_guarded(self, instance: InstanceConfig) -> PollReport | None:
        try:
            if not await self._locks.hold(instance.id):
                return None
            report = await self.poll(instance)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one instance's trouble must not stop the others or the next round
            log.exception("poll failed", instance_id=instance.id, error=str(exc))
            return None
        if report.worth_tracing:
            await self._publish_trace(PollStep(instance.id).finished(report))
        return report

    async def poll(self, instance: InstanceConfig) -> PollReport:
        """One round for one instance (the caller holds the instance's lock)."""
        report = PollReport(instance.id)
        try:
            cursor = await self._cursors.load(instance.id)
            if cursor is None:
                cursor = Cursor.starting_at(await self._users.newest(instance))
                await self._cursors.save(instance.id, cursor)
                report.initialized = True
                report.cursor_after = cursor.position
                log.info("poller cursor initialized", instance_id=instance.id, at=cursor.position.date_updated)
                return report
            report.cursor_before = report.cursor_after = cursor.position
            await self._read(instance, cursor, report)
        except AccessplanitError as exc:
            report.stopped_early = exc.error.message
            await self._trace_failure(instance, exc.error)
            return report
        except (KafkaUnavailable, ClaimsUnavailable) as exc:
            report.stopped_early = f"{type(exc).__name__}: {exc}"
            log.warning(
                "poll round stopped; the next round resumes from the cursor", instance_id=instance.id, error=str(exc)
            )
        self._last_error.pop(instance.id, None)
        return report

    async def _read(self, instance: InstanceConfig, cursor: Cursor, report: PollReport) -> None:
        """Pages until the end (or max_pages); `report.cursor_after` follows every cursor saved."""
        round_started_ms = self._now_ms()
        position = round_start(cursor, self._config.overlap_s)
        report.started_from = position
        for _ in range(self._config.max_pages):
            read_at_ms = self._now_ms()
            users = await self._users.page(instance, position, self._config.page_size)
            submitted: list[str] = []
            for user in users:
                if self._deleted(instance, report):
                    return
                state = await self._submit(instance, user, report)
                if state is Claim.IN_FLIGHT:
                    # Someone (a webhook) is publishing this very change now: stop before it, retry next round.
                    report.stopped_early = f"user {user.get('ID')} is being received right now"
                    await self._settle(instance, submitted, read_at_ms, report)
                    await self._save(instance, cursor, report)
                    return
                submitted.append(str(user.get("ID")))
                read_at = record_position(user)
                if read_at is not None:
                    position = read_at
                    cursor = cursor.advanced_to(position)
            await self._settle(instance, submitted, read_at_ms, report)
            await self._save(instance, cursor, report)
            if self._deleted(instance, report) or not await self._locks.hold(instance.id):
                return
            if len(users) < self._config.page_size:
                await self._read_deferred_alone(instance, round_started_ms, report)
                return
        report.more_to_read = True

    async def _settle(self, instance: InstanceConfig, user_ids: list[str], read_at_ms: int, report: PollReport) -> None:
        """Deferred deliveries of these users that arrived before their page was requested are answered by it."""
        if self._deferred is not None and user_ids:
            report.deferred_settled += await self._deferred.settle(instance.id, user_ids, read_at_ms - self._skew_ms)

    async def _read_deferred_alone(self, instance: InstanceConfig, round_started_ms: int, report: PollReport) -> None:
        """The round listed every change since the cursor; a deferred user it did not list (deleted, or a change that
        kept DateUpdated) and whose delivery came before the round began is read on its own, a bounded number per
        round (the next round reads the rest)."""
        if self._deferred is None or self._reader is None:
            return
        due = await self._deferred.due(instance.id, round_started_ms - self._skew_ms, self._config.page_size)
        for deferral in due:
            read_at_ms = self._now_ms()
            record = await self._reader.get_user(instance, deferral.user_id)
            report.read_alone += 1
            state = await self._submit_read_alone(instance, deferral, record, report)
            if state is Claim.IN_FLIGHT:
                report.stopped_early = f"user {deferral.user_id} is being received right now"
                return
            await self._settle(instance, [deferral.user_id], read_at_ms, report)

    async def _submit_read_alone(
        self, instance: InstanceConfig, deferral: Deferral, record: dict[str, Any] | None, report: PollReport
    ) -> Claim:
        if record is not None:
            return await self._submit(instance, record, report)
        report.read += 1
        event = removed_user_event(
            instance_id=instance.id,
            user_id=deferral.user_id,
            occurred_at=datetime.fromtimestamp(deferral.arrived_ms / 1000, UTC),
            trigger=Trigger.POLL,
            execution_id=new_id(),
            received_at=utcnow(),
            source_action="catch-up read (the user no longer exists)",
        )
        return await self._publish(instance, event, report)

    def _deleted(self, instance: InstanceConfig, report: PollReport) -> bool:
        """The instance was deleted during the round: the round ends, and its cursor, removed with the rest of its
        state, is not written again (a re-created id starts from its own first round)."""
        if self._registry.get(instance.id) is not None:
            return False
        report.stopped_early = "the instance was deleted"
        return True

    async def _save(self, instance: InstanceConfig, cursor: Cursor, report: PollReport) -> None:
        if self._deleted(instance, report):
            return
        await self._cursors.save(instance.id, cursor)
        report.cursor_after = cursor.position

    async def _submit(self, instance: InstanceConfig, user: dict[str, Any], report: PollReport) -> Claim:
        report.read += 1
        try:
            event = user_event(
                instance_id=instance.id,
                kind=record_kind(user),
                user=user,
                trigger=Trigger.POLL,
                execution_id=new_id(),
                received_at=utcnow(),
                source_action="poll DateUpdated",
            )
        except InvalidPayload as exc:
            # Re-reading it will not make it valid; recorded in the poll's trace and passed.
            report.skipped.append(f"user {user.get('ID')}: {exc}")
            return Claim.DONE
        return await self._publish(instance, event, report)

    async def _publish(self, instance: InstanceConfig, event: ChangeEvent, report: PollReport) -> Claim:
        notes, headers = own_write_marks(event, instance)
        notes = [*notes, "Found by the catch-up poll: no webhook had delivered this change"]
        state = await self._intake.submit(event, stage=Stage.POLLER, notes=notes, headers=headers)
        if state is Claim.NEW:
            report.published.append(event.event_id)
        elif state is Claim.DONE:
            report.duplicates += 1
        return state

    async def _trace_failure(self, instance: InstanceConfig, error: ErrorInfo) -> None:
        """Once per distinct problem, not every interval: the operator needs to know, not to be flooded."""
        log.warning("poll failed", instance_id=instance.id, error=error.message)
        if self._last_error.get(instance.id) == error.message:
            return
        self._last_error[instance.id] = error.message
        await self._publish_trace(PollStep(instance.id).failed(error))

    async def _publish_trace(self, record: TraceRecord) -> None:
        try:
            await self._trace(record)
        except Exception as exc:  # the poll's outcome is in Kafka/Redis already; its trace is best effort
            log.warning("poll trace not published", error=str(exc))
