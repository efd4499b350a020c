"""Replay, for the CLI and the console alike: a change or a parked command published again as a new execution.

The original comes from Kafka, never from the trace: a change from `tandem.changes` (found by its execution id or
its event id), a command from the dead-letter or retry record itself. A replay is a new execution linked to the one
it repeats (`original_execution_id`), trigger `replay`, attempt 1. A replayed change gets an event id derived from
the original change (`replay_event_id`), so replaying it twice publishes it once: the second replay finds the first
on `tandem.changes`. A replayed command keeps its idempotency key, so one applied since is skipped (and the writer
would skip it too).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from aiokafka import TopicPartition
from pydantic import ValidationError

from tandem_shared.contracts import (
    ChangeEvent,
    Headers,
    Stage,
    SyncCommand,
    TraceStatus,
    Trigger,
    deterministic_event_id,
    utcnow,
)
from tandem_shared.contracts.envelopes import Envelope, change_envelope, command_envelope
from tandem_shared.contracts.topics import CHANGES, COMMANDS_DLQ, COMMANDS_RETRY
from tandem_shared.ids import new_id
from tandem_shared.kafka import KafkaConnection, Producer, partitions_of, read_records, send_envelope
from tandem_shared.kafka.follower import Record
from tandem_shared.privacy import minimise_event
from tandem_shared.tracing import StepRecorder, publish_trace


class AppliedLookup(Protocol):
    """When a command's change was applied, if it was (the writer's idempotency records)."""

    async def applied_at(self, command: SyncCommand) -> datetime | None: ...


# -- what can be replayed -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Parked:
    """A record on the dead-letter topic or a retry tier."""

    topic: str
    partition: int
    offset: int
    timestamp: datetime
    key: bytes | None
    value: bytes
    headers: dict[str, str]
    command: SyncCommand | None

    @property
    def where(self) -> str:
        return f"{self.topic}@{self.partition}:{self.offset}"

    @classmethod
    def of(cls, record: Record) -> Parked:
        value = record.value or b""
        try:
            command: SyncCommand | None = SyncCommand.model_validate_json(value)
        except ValidationError:
            command = None
        return cls(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            timestamp=datetime.fromtimestamp(record.timestamp / 1000, tz=UTC),
            key=record.key,
            value=value,
            headers=_headers(record),
            command=command,
        )


@dataclass(frozen=True)
class Filters:
    instance: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    execution: str | None = None

    def match(self, entry: Parked) -> bool:
        command = entry.command
        if command is None:
            return False
        if self.instance and command.instance_id != self.instance:
            return False
        if self.execution and self.execution not in (command.execution_id, command.original_execution_id):
            return False
        if self.since and entry.timestamp < self.since:
            return False
        return not (self.until and entry.timestamp > self.until)


@dataclass
class Selection:
    chosen: list[Parked] = field(default_factory=list)
    duplicates: list[Parked] = field(default_factory=list)
    unreadable: list[Parked] = field(default_factory=list)


def select(entries: Iterable[Parked], filters: Filters) -> Selection:
    """Matching entries, one per idempotency key (the latest: an entry replayed and failed again is there twice)."""
    selection = Selection()
    latest: dict[str, Parked] = {}
    for entry in entries:
        if entry.command is None:
            selection.unreadable.append(entry)
            continue
        if not filters.match(entry):
            continue
        key = entry.command.idempotency_key
        if key in latest:
            selection.duplicates.append(latest[key])
        latest[key] = entry
    selection.chosen = sorted(latest.values(), key=lambda e: (e.timestamp, e.topic, e.partition, e.offset))
    return selection


def parked_topics(source: str) -> list[str]:
    """`dlq`: the dead-letter topic; `retry`: the retry tiers."""
    return [COMMANDS_DLQ] if source == "dlq" else list(COMMANDS_RETRY)


async def read_parked(
    connection: KafkaConnection, topics: Iterable[str], start: Mapping[TopicPartition, int] | None = None
) -> list[Parked]:
    return [Parked.of(record) for record in await read_records(connection, topics, start)]


async def pending_start(connection: KafkaConnection, group_id: str, topics: Iterable[str]) -> dict[TopicPartition, int]:
    """The writer group's committed offsets: records before them were handled already."""
    consumer = connection.consumer(group_id=group_id, enable_auto_commit=False)
    await consumer.start()
    try:
        start: dict[TopicPartition, int] = {}
        for topic in topics:
            for tp in await partitions_of(connection, topic):
                committed = await consumer.committed(tp)
                if committed is not None:
                    start[tp] = committed
        return start
    finally:
        await consumer.stop()


# -- the originals on tandem.changes --------------------------------------------------------------------------


def replay_event_id(original: ChangeEvent) -> str:
    """The same for every replay of one change: a new delivery (not a redelivery of the original), published once."""
    return deterministic_event_id("replay", original.event_id, original.execution_id)


@dataclass
class Changes:
    """Change events found on `tandem.changes`, and the replays of them published already."""

    by_execution: dict[str, tuple[ChangeEvent, bytes | None]] = field(default_factory=dict)
    by_event: dict[str, tuple[ChangeEvent, bytes | None]] = field(default_factory=dict)
    replays: dict[str, ChangeEvent] = field(default_factory=dict)

    def replay_of(self, original: ChangeEvent) -> ChangeEvent | None:
        return self.replays.get(replay_event_id(original))


async def find_changes(
    connection: KafkaConnection,
    *,
    execution_ids: Iterable[str] = (),
    event_ids: Iterable[str] = (),
    since: datetime | None = None,
) -> Changes:
    """The change events that started these executions or carry these event ids, as long as `tandem.changes`
    retains them, with their replays. `since` (when the change was published, at the latest) skips older records.

    A replay has its original's key, so it follows the original on the same partition: one pass finds both.
    """
    executions, events = set(execution_ids), set(event_ids)
    found = Changes()
    replay_ids: set[str] = set()

    def keep(record: Record) -> bool:
        headers = _headers(record)
        execution_id, event_id = headers.get(Headers.EXECUTION_ID), headers.get(Headers.EVENT_ID)
        wanted = execution_id in executions or event_id in events
        if not wanted and event_id not in replay_ids:
            return False
        try:
            event = ChangeEvent.model_validate_json(record.value or b"")
        except ValidationError:
            return False
        if event.event_id in replay_ids:
            found.replays[event.event_id] = event
        if wanted:
            found.by_execution[event.execution_id] = (event, record.key)
            found.by_event[event.event_id] = (event, record.key)
            replay_ids.add(replay_event_id(event))
        return False

    await read_records(connection, [CHANGES], keep=keep, since=since)
    return found


# -- deciding --------------------------------------------------------------------------------------------------


class Verdict(StrEnum):
    REPLAY = "replay"
    APPLIED = "applied since"
    CHANGE_GONE = "change gone"
    REPLAYED_BEFORE = "replayed before"


@dataclass(frozen=True)
class Decision:
    entry: Parked
    command: SyncCommand
    verdict: Verdict
    # With `--remap`: the original change to publish again instead of the command.
    change: ChangeEvent | None = None


async def decide(selection: Selection, applied: AppliedLookup, changes: Changes | None = None) -> list[Decision]:
    """What to do with each chosen parked command; with `changes` (a remap) its original change is replayed."""
    decisions = []
    for entry in selection.chosen:
        command = entry.command
        assert command is not None  # `select` chooses commands only
        found = changes.by_event.get(command.event_id) if changes is not None else None
        if await applied.applied_at(command) is not None:
            decisions.append(Decision(entry, command, Verdict.APPLIED))
        elif changes is not None and found is None:
            decisions.append(Decision(entry, command, Verdict.CHANGE_GONE))
        elif changes is not None and found is not None and changes.replay_of(found[0]) is not None:
            decisions.append(Decision(entry, command, Verdict.REPLAYED_BEFORE))
        else:
            decisions.append(Decision(entry, command, Verdict.REPLAY, found[0] if found is not None else None))
    return decisions


# -- publishing ------------------------------------------------------------------------------------------------


def root_execution(command: SyncCommand) -> str:
    return command.original_execution_id or command.execution_id


def replayed_command(command: SyncCommand, execution_id: str) -> SyncCommand:
    return command.model_copy(
        update={
            "command_id": new_id(),
            "execution_id": execution_id,
            "original_execution_id": root_execution(command),
            "attempt": 1,
            "trigger": Trigger.REPLAY,
            "created_at": utcnow(),
        }
    )


def replayed_event(original: ChangeEvent, execution_id: str, *, original_execution_id: str) -> ChangeEvent:
    return original.model_copy(
        update={
            "execution_id": execution_id,
            "original_execution_id": original_execution_id,
            "trigger": Trigger.REPLAY,
            "event_id": replay_event_id(original),
            "received_at": utcnow(),
        }
    )


@dataclass(frozen=True)
class Note:
    """What the replay's trace record says: its log line, summary and input."""

    log: str
    summary: str
    data_in: dict[str, Any]


class Replays:
    """Publishes replays and traces them (stage `replay`)."""

    def __init__(self, producer: Producer) -> None:
        self._producer = producer

    async def change(
        self, original: ChangeEvent, *, original_execution_id: str, replayed_from: str, note: Note
    ) -> ChangeEvent:
        event = replayed_event(original, new_id(), original_execution_id=original_execution_id)
        await self._publish(change_envelope(event, replayed_from=replayed_from))
        # The change as published, minimised like every trace step's output: no instance is at hand here, so
        # its fields are the identity only (the mapper's step of the replay shows the mapped ones).
        await self._trace(event.execution_id, original_execution_id, event, note, data_out=minimise_event(event, None))
        return event

    async def command(self, entry: Parked, command: SyncCommand, note: Note) -> SyncCommand:
        out = replayed_command(command, new_id())
        await self._publish(command_envelope(out, replayed_from=entry.where))
        await self._trace(out.execution_id, root_execution(command), out, note, data_out=out.payload)
        return out

    async def _publish(self, envelope: Envelope) -> None:
        await (await send_envelope(self._producer, envelope))

    async def _trace(
        self,
        execution_id: str,
        original_execution_id: str,
        about: ChangeEvent | SyncCommand,
        note: Note,
        *,
        data_out: dict[str, Any],
    ) -> None:
        step = StepRecorder.about(
            Stage.REPLAY,
            about,
            execution_id=execution_id,
            original_execution_id=original_execution_id,
            trigger=Trigger.REPLAY,
        )
        step.log("info", note.log)
        record = step.finish(TraceStatus.SUCCEEDED, note.summary, data_in=note.data_in, data_out=data_out)
        await publish_trace(self._producer, record)


def _headers(record: Record) -> dict[str, str]:
    return {k: (v or b"").decode("utf-8", "replace") for k, v in (record.headers or ())}
