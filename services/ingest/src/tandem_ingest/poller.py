"""Catch-up poller: changes the webhooks missed (Tandem was down, a delivery was lost) still reach Kafka.

Per instance it pages `$filter=DateUpdated gt '<cursor>'` in (DateUpdated, ID) order and submits each user through
the same Intake as the webhook route. Webhook and poller produce the same event id for the same change, so what the
webhook already delivered is recognized and not published again. The cursor lives in Redis and only moves past a
record once that record is in Kafka, so a crash or an outage costs a re-read, never a change.

Runs inside ingest (it needs the Intake, the publisher and the instance registry ingest already has). A Redis lock
per instance lets several ingest replicas run it while only one polls a given instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from tandem_ingest.accessplanit_changes import own_write_marks
from tandem_ingest.dedupe import Claim, ClaimsUnavailable
from tandem_ingest.errors import InvalidPayload
from tandem_ingest.intake import Intake
from tandem_ingest.normalize.accessplanit import record_kind, user_event
from tandem_ingest.publishing import KafkaUnavailable
from tandem_shared.contracts import (
    Direction,
    ErrorInfo,
    InstanceConfig,
    Stage,
    TraceRecord,
    TraceStatus,
    Trigger,
    utcnow,
)
from tandem_shared.instances import InstanceRegistry
from tandem_shared.logging import get_logger
from tandem_shared.redis.keys import poller_cursor_key, poller_lock_key
from tandem_shared.redis.lease import Leases
from tandem_shared.tracing import StepRecorder, new_id
from tandem_shared.vendors.accessplanit.client import (
    AccessplanitClient,
    AccessplanitClients,
    AccessplanitError,
    odata_string,
)
from tandem_shared.vendors.priority import Priority

log = get_logger("tandem.ingest.poller")

ORDER = "DateUpdated,ID"
# The poll carries changes to Mailchimp as the webhooks do (the ones they missed): the live path.
PRIORITY = Priority.LIVE


def format_timestamp(moment: datetime) -> str:
    """accessplanit's own format: UTC with milliseconds and Z."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_timestamp(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _id_number(user_id: str) -> int:
    try:
        return int(user_id)
    except ValueError:
        return -1


@dataclass(frozen=True)
class Position:
    """A place in the (DateUpdated, ID) order. `user_id` None means "from this time on, inclusive"."""

    date_updated: str | None
    user_id: str | None = None

    def sort_key(self) -> tuple[datetime, int]:
        if self.date_updated is None:
            return (datetime.min.replace(tzinfo=UTC), -1)
        return (parse_timestamp(self.date_updated), _id_number(self.user_id or ""))


@dataclass(frozen=True)
class Cursor:
    """The last record passed to Kafka, and where polling of this instance began (the overlap never reaches back
    before it: what changed before Tandem first polled is a backfill's job, not the poller's)."""

    position: Position
    floor: Position

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "date_updated": self.position.date_updated,
                "user_id": self.position.user_id,
                "floor_date_updated": self.floor.date_updated,
                "floor_user_id": self.floor.user_id,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Cursor:
        data = orjson.loads(raw)
        return cls(
            Position(data["date_updated"], data["user_id"]),
            Position(data["floor_date_updated"], data["floor_user_id"]),
        )

    @classmethod
    def starting_at(cls, position: Position) -> Cursor:
        return cls(position, position)

    def advanced_to(self, position: Position) -> Cursor:
        return replace(self, position=position) if position.sort_key() > self.position.sort_key() else self


def record_position(user: dict[str, Any]) -> Position | None:
    """Where a record read sits in the order; None for a record without a usable DateUpdated (never re-served by
    a `DateUpdated gt` page, so it cannot hold the cursor back)."""
    date, user_id = user.get("DateUpdated"), user.get("ID")
    if not isinstance(date, str) or user_id is None:
        return None
    try:
        parse_timestamp(date)
    except ValueError:
        return None
    return Position(date, str(user_id))


def page_filter(after: Position) -> str:
    """Strictly after `after` in (DateUpdated, ID) order; empty (everything) before the first record."""
    if after.date_updated is None:
        return ""
    date = odata_string(after.date_updated)
    if after.user_id is None:
        return f"DateUpdated ge {date}"
    return f"DateUpdated gt {date} or (DateUpdated eq {date} and ID gt {odata_string(after.user_id)})"


def round_start(cursor: Cursor, overlap_s: float) -> Position:
    """Where a round starts reading: a little before the cursor, because a write that committed late may carry a
    DateUpdated older than one already read (records read twice are recognized as duplicates)."""
    if overlap_s <= 0 or cursor.position.date_updated is None:
        return cursor.position
    back = Position(format_timestamp(parse_timestamp(cursor.position.date_updated) - timedelta(seconds=overlap_s)))
    return cursor.floor if back.sort_key() <= cursor.floor.sort_key() else back


class CursorStore(Protocol):
    async def load(self, instance_id: str) -> Cursor | None: ...

    async def save(self, instance_id: str, cursor: Cursor) -> None: ...


class RedisCursorStore:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def load(self, instance_id: str) -> Cursor | None:
        raw = await self._redis.get(poller_cursor_key(instance_id))
        return None if raw is None else Cursor.from_json(raw)

    async def save(self, instance_id: str, cursor: Cursor) -> None:
        await self._redis.set(poller_cursor_key(instance_id), cursor.to_json())


class PollerLocks:
    """One poller per instance across replicas: an owner lease per instance, renewed by every `hold` while this
    replica keeps polling; a crashed owner's lease expires."""

    def __init__(self, redis: Redis, ttl_s: float) -> None:
        self._owner = uuid.uuid4().hex
        self._leases = Leases(redis, max(1.0, ttl_s))
        self._held: set[str] = set()

    async def hold(self, instance_id: str) -> bool:
        held = await self._leases.acquire(poller_lock_key(instance_id), self._owner)
        (self._held.add if held else self._held.discard)(instance_id)
        return held

    async def release_all(self) -> None:
        for instance_id in list(self._held):
            with contextlib.suppress(RedisError, OSError):
                await self._leases.release(poller_lock_key(instance_id), self._owner)
        self._held.clear()


@dataclass
class PollReport:
    instance_id: str
    started_from: Position | None = None
    read: int = 0
    published: list[str] = field(default_factory=list)  # event ids
    duplicates: int = 0
    skipped: list[str] = field(default_factory=list)  # why records could not become events
    cursor_before: Position | None = None
    cursor_after: Position | None = None
    initialized: bool = False
    stopped_early: str | None = None

    @property
    def found_changes(self) -> bool:
        return self.cursor_before is not None and self.cursor_after != self.cursor_before


@dataclass(frozen=True)
class PollerConfig:
    interval_s: float
    page_size: int
    max_pages: int
    overlap_s: float


TraceSink = Callable[[TraceRecord], Awaitable[None]]


class AccessplanitPoller:
    def __init__(
        self,
        *,
        registry: InstanceRegistry,
        clients: AccessplanitClients,
        intake: Intake,
        cursors: CursorStore,
        locks: PollerLocks,
        trace: TraceSink,
        config: PollerConfig,
    ) -> None:
        self._registry = registry
        self._clients = clients
        self._intake = intake
        self._cursors = cursors
        self._locks = locks
        self._trace = trace
        self._config = config
        self._last_error: dict[str, str] = {}

    async def run(self) -> None:
        while True:
            await self.poll_all()
            await asyncio.sleep(self._config.interval_s)

    async def poll_all(self) -> list[PollReport]:
        instances = [i for i in self._registry.all() if _polls(i)]
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
        await self._trace_report(instance, report)
        return report

    async def poll(self, instance: InstanceConfig) -> PollReport:
        """One round for one instance (the caller holds the instance's lock)."""
        report = PollReport(instance.id)
        try:
            client = self._clients.for_instance(instance)
            cursor = await self._cursors.load(instance.id)
            if cursor is None:
                cursor = Cursor.starting_at(await self._newest(client))
                await self._cursors.save(instance.id, cursor)
                report.initialized = True
                report.cursor_after = cursor.position
                log.info("poller cursor initialized", instance_id=instance.id, at=cursor.position.date_updated)
                return report
            report.cursor_before = report.cursor_after = cursor.position
            await self._read(instance, client, cursor, report)
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

    async def _newest(self, client: AccessplanitClient) -> Position:
        newest = await client.list_users(
            filter="",
            orderby="DateUpdated desc,ID desc",
            top=1,
            select="ID,DateUpdated",
            action="find the newest change",
            priority=PRIORITY,
        )
        position = record_position(newest[0]) if newest else None
        return position or Position(None)

    async def _read(
        self, instance: InstanceConfig, client: AccessplanitClient, cursor: Cursor, report: PollReport
    ) -> None:
        """Pages until the end (or max_pages); `report.cursor_after` follows every cursor saved."""
        position = round_start(cursor, self._config.overlap_s)
        report.started_from = position
        for _ in range(self._config.max_pages):
            users = await client.list_users(
                filter=page_filter(position),
                orderby=ORDER,
                top=self._config.page_size,
                action="read users changed since the last poll",
                priority=PRIORITY,
            )
            for user in users:
                if self._deleted(instance, report):
                    return
                state = await self._submit(instance, user, report)
                if state is Claim.IN_FLIGHT:
                    # Someone (a webhook) is publishing this very change now: stop before it, retry next round.
                    report.stopped_early = f"user {user.get('ID')} is being received right now"
                    await self._save(instance, cursor, report)
                    return
                read_at = record_position(user)
                if read_at is not None:
                    position = read_at
                    cursor = cursor.advanced_to(position)
            await self._save(instance, cursor, report)
            if (
                len(users) < self._config.page_size
                or self._deleted(instance, report)
                or not await self._locks.hold(instance.id)
            ):
                break

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
        notes, headers = own_write_marks(event, instance)
        notes = [*notes, "Found by the catch-up poll: no webhook had delivered this change"]
        state = await self._intake.submit(event, stage=Stage.POLLER, notes=notes, headers=headers)
        if state is Claim.NEW:
            report.published.append(event.event_id)
        elif state is Claim.DONE:
            report.duplicates += 1
        return state

    async def _trace_report(self, instance: InstanceConfig, report: PollReport) -> None:
        if not report.found_changes and not report.skipped:
            return
        step = StepRecorder(stage=Stage.POLLER, execution_id=new_id(), instance_id=instance.id, trigger=Trigger.POLL)
        for problem in report.skipped:
            step.log("warning", f"not synced: {problem}")
        if report.stopped_early:
            step.log("info", f"stopped early: {report.stopped_early}")
        summary = (
            f"Catch-up poll read {report.read} changed user(s): {len(report.published)} not received by webhook "
            f"(published now), {report.duplicates} already received"
            + (f", {len(report.skipped)} unreadable" if report.skipped else "")
        )
        record = step.finish(
            TraceStatus.SUCCEEDED if not report.skipped else TraceStatus.FAILED,
            summary,
            data_out={
                "from": _position_json(report.started_from),
                "cursor_before": _position_json(report.cursor_before),
                "cursor_after": _position_json(report.cursor_after),
                "published_event_ids": report.published,
            },
            changes_detected=bool(report.published),
        )
        await self._publish_trace(record)

    async def _trace_failure(self, instance: InstanceConfig, error: ErrorInfo) -> None:
        """Once per distinct problem, not every interval: the operator needs to know, not to be flooded."""
        log.warning("poll failed", instance_id=instance.id, error=error.message)
        if self._last_error.get(instance.id) == error.message:
            return
        self._last_error[instance.id] = error.message
        step = StepRecorder(stage=Stage.POLLER, execution_id=new_id(), instance_id=instance.id, trigger=Trigger.POLL)
        verdict = "needs attention" if error.permanent else "will be retried next round"
        await self._publish_trace(step.finish(TraceStatus.FAILED, f"Catch-up poll failed ({verdict})", error=error))

    async def _publish_trace(self, record: TraceRecord) -> None:
        try:
            await self._trace(record)
        except Exception as exc:  # the poll's outcome is in Kafka/Redis already; its trace is best effort
            log.warning("poll trace not published", error=str(exc))


def _polls(instance: InstanceConfig) -> bool:
    """accessplanit changes matter only when the instance syncs them to Mailchimp."""
    return instance.direction in (Direction.BOTH, Direction.ACCESSPLANIT_TO_MAILCHIMP)


def _position_json(position: Position | None) -> dict[str, str | None] | None:
    if position is None:
        return None
    return {"DateUpdated": position.date_updated, "ID": position.user_id}
