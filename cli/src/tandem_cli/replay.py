"""`tandem replay`: dead letters (or commands still waiting on a retry tier) back onto `tandem.commands`.

A replay is a new execution linked to the one it repeats (`original_execution_id`), with the attempt count reset
and `x-replayed-from=<topic>@<partition>:<offset>`. Commands whose change was applied since are skipped, and the
writer would skip them too (same idempotency key). `--remap` republishes the original change event instead, so the
mapper maps it again with the instance's current configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from pydantic import ValidationError

from tandem_cli.main import REGISTRARS
from tandem_shared.contracts import (
    ChangeEvent,
    Headers,
    Stage,
    SyncCommand,
    TraceRecord,
    TraceStatus,
    Trigger,
    utcnow,
)
from tandem_shared.contracts.topics import CHANGES, COMMANDS, COMMANDS_DLQ, COMMANDS_RETRY, TRACE
from tandem_shared.kafka import caught_up, partitions_of
from tandem_shared.redis.idempotency import RedisIdempotencyStore
from tandem_shared.settings import CommonSettings
from tandem_shared.tracing import StepRecorder, new_id

_RELATIVE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_when(value: str, now: datetime | None = None) -> datetime:
    """ISO-8601 (a date, or a time; UTC unless it says otherwise) or an age such as 30m, 2h, 7d."""
    relative = _RELATIVE.match(value.strip())
    if relative:
        amount, unit = relative.groups()
        return (now or utcnow()) - timedelta(**{_UNITS[unit]: int(amount)})
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r}: give an ISO-8601 time (2026-11-26T07:00) or an age (2h)") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


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


def replayed_event(event: ChangeEvent, command: SyncCommand, execution_id: str) -> ChangeEvent:
    return event.model_copy(
        update={
            "execution_id": execution_id,
            "original_execution_id": root_execution(command),
            "trigger": Trigger.REPLAY,
            "received_at": utcnow(),
        }
    )


def replay_headers(entry: Parked, execution_id: str, command: SyncCommand) -> dict[str, str]:
    return {
        "content-type": "application/json",
        Headers.INSTANCE_ID: command.instance_id,
        Headers.EXECUTION_ID: execution_id,
        Headers.ORIGINAL_EXECUTION_ID: root_execution(command),
        Headers.EVENT_ID: command.event_id,
        Headers.IDEMPOTENCY_KEY: command.idempotency_key,
        Headers.REPLAYED_FROM: entry.where,
    }


def _parked(record: ConsumerRecord[bytes, bytes]) -> Parked:
    value = record.value or b""
    try:
        command: SyncCommand | None = SyncCommand.model_validate_json(value)
    except ValidationError:
        command = None
    return Parked(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        timestamp=datetime.fromtimestamp(record.timestamp / 1000, tz=UTC),
        key=record.key,
        value=value,
        headers={k: (v or b"").decode("utf-8", "replace") for k, v in (record.headers or ())},
        command=command,
    )


async def read_records(
    bootstrap: str,
    topics: Iterable[str],
    start: dict[TopicPartition, int] | None = None,
    keep: Callable[[ConsumerRecord[bytes, bytes]], bool] = lambda _: True,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Records from `start` (default: the beginning) up to the end as of now, without a consumer group."""
    partitions = [tp for topic in topics for tp in await partitions_of(bootstrap, topic)]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, client_id="tandem-replay")
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        for tp, offset in (start or {}).items():
            consumer.seek(tp, offset)
        end = await consumer.end_offsets(partitions)
        found: list[ConsumerRecord[bytes, bytes]] = []
        while not await caught_up(consumer, end):
            for tp, records in (await consumer.getmany(*partitions, timeout_ms=500)).items():
                found.extend(r for r in records if r.offset < end[tp] and keep(r))
        return found
    finally:
        await consumer.stop()


async def pending_start(bootstrap: str, group_id: str, topics: Iterable[str]) -> dict[TopicPartition, int]:
    """The writer group's committed offsets: records before them were handled already."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False)
    await consumer.start()
    try:
        start: dict[TopicPartition, int] = {}
        for topic in topics:
            for tp in await partitions_of(bootstrap, topic):
                committed = await consumer.committed(tp)
                if committed is not None:
                    start[tp] = committed
        return start
    finally:
        await consumer.stop()


def _header(record: ConsumerRecord[bytes, bytes], name: str) -> str:
    return dict(record.headers or ()).get(name, b"").decode("utf-8", "replace")


async def find_changes(bootstrap: str, event_ids: set[str]) -> dict[str, tuple[ChangeEvent, bytes | None]]:
    """The change events the commands were mapped from, by event id (as long as `tandem.changes` retains them)."""
    found: dict[str, tuple[ChangeEvent, bytes | None]] = {}
    for record in await read_records(bootstrap, [CHANGES], keep=lambda r: _header(r, Headers.EVENT_ID) in event_ids):
        try:
            event = ChangeEvent.model_validate_json(record.value or b"")
        except ValidationError:
            continue
        found[event.event_id] = (event, record.key)
    return found


def _wire(headers: dict[str, str]) -> list[tuple[str, bytes]]:
    return [(name, value.encode()) for name, value in headers.items()]


class _TraceProducer:
    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer

    async def publish(self, record: TraceRecord) -> None:
        await self._producer.send_and_wait(
            TRACE,
            record.model_dump_json().encode(),
            key=record.execution_id.encode(),
            headers=_wire({Headers.INSTANCE_ID: record.instance_id, Headers.EXECUTION_ID: record.execution_id}),
        )


def _describe(entry: Parked) -> str:
    command = entry.command
    assert command is not None
    who = command.identity.email or command.identity.contact_key
    error = entry.headers.get(Headers.EXCEPTION_MESSAGE, "")
    attempts = entry.headers.get(Headers.ATTEMPT, "?")
    return (
        f"{entry.where}  {entry.timestamp:%Y-%m-%d %H:%M:%S}  {command.instance_id}  {who}  "
        f"execution {root_execution(command)}  attempts {attempts}  {error}"
    )


async def replay(args: argparse.Namespace) -> int:
    settings = CommonSettings()
    bootstrap = args.bootstrap_servers or settings.kafka_bootstrap_servers
    topics = [COMMANDS_DLQ] if args.source == "dlq" else list(COMMANDS_RETRY)
    start = await pending_start(bootstrap, args.writer_group, topics) if args.source == "retry" else None
    entries = [_parked(r) for r in await read_records(bootstrap, topics, start)]
    selection = select(entries, Filters(args.instance, args.since, args.until, args.execution))
    store = RedisIdempotencyStore.from_url(args.redis_url or settings.redis_url)
    changes = (
        await find_changes(bootstrap, {e.command.event_id for e in selection.chosen if e.command}) if args.remap else {}
    )
    producer = None
    if not args.dry_run:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    replayed = applied = missing = 0
    try:
        if producer is not None:
            await producer.start()
        for entry in selection.chosen:
            command = entry.command
            assert command is not None
            if await store.applied_at(command) is not None:
                applied += 1
                print(f"skip (applied since)   {_describe(entry)}")
                continue
            change = changes.get(command.event_id)
            if args.remap and change is None:
                missing += 1
                print(f"skip (change gone)     {_describe(entry)}")
                continue
            action = ("would replay" if args.dry_run else "replay") + (" (remap)" if args.remap else "")
            print(f"{action}  {_describe(entry)}")
            if producer is None:
                replayed += 1
                continue
            await _publish(producer, entry, command, change)
            replayed += 1
    finally:
        if producer is not None:
            await producer.stop()
        await store.close()
    verb = "would replay" if args.dry_run else "replayed"
    print(
        f"{len(selection.chosen)} matching in {', '.join(topics)}: {verb} {replayed}, already applied {applied}"
        + (f", original change no longer on {CHANGES} {missing}" if args.remap else "")
        + (f", older copies {len(selection.duplicates)}" if selection.duplicates else "")
        + (f", unreadable (not commands) {len(selection.unreadable)}" if selection.unreadable else "")
        + (". Dry run: nothing was published." if args.dry_run else ".")
    )
    return 0


async def _publish(
    producer: AIOKafkaProducer, entry: Parked, command: SyncCommand, change: tuple[ChangeEvent, bytes | None] | None
) -> None:
    execution_id = new_id()
    headers = replay_headers(entry, execution_id, command)
    if change is None:
        out = replayed_command(command, execution_id)
        await producer.send_and_wait(COMMANDS, out.model_dump_json().encode(), key=entry.key, headers=_wire(headers))
        how, data_out = "the same command", out.payload
    else:
        event, key = change
        republished = replayed_event(event, command, execution_id)
        headers.pop(Headers.IDEMPOTENCY_KEY)
        await producer.send_and_wait(CHANGES, republished.model_dump_json().encode(), key=key, headers=_wire(headers))
        how, data_out = "the original change, re-mapped with the current configuration", republished.fields
    step = StepRecorder(
        stage=Stage.REPLAY,
        execution_id=execution_id,
        original_execution_id=root_execution(command),
        instance_id=command.instance_id,
        flow=command.flow,
        trigger=Trigger.REPLAY,
        contact_email=command.identity.email,
        accessplanit_user_id=command.identity.accessplanit_user_id,
    )
    step.log("info", f"Operator replay by {os.environ.get('USER', 'unknown')} from {entry.where}")
    record = step.finish(
        TraceStatus.SUCCEEDED,
        f"Replayed {how} from {entry.where} (execution {root_execution(command)})",
        data_in={k: v for k, v in entry.headers.items() if k.startswith("x-")},
        data_out=data_out,
    )
    await _TraceProducer(producer).publish(record)


def run(args: argparse.Namespace) -> int:
    return asyncio.run(replay(args))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "replay",
        help="republish dead letters (or pending retries) to the command topic",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--from",
        dest="source",
        choices=["dlq", "retry"],
        required=True,
        help=f"dlq: {COMMANDS_DLQ}; retry: commands still waiting on the retry tiers (not yet consumed)",
    )
    parser.add_argument("--instance", help="only this instance's commands")
    parser.add_argument(
        "--since", type=parse_when, help="only records parked at or after this time (ISO-8601 or an age: 2h)"
    )
    parser.add_argument("--until", type=parse_when, help="only records parked at or before this time")
    parser.add_argument("--execution", help="only this execution (its id or the id of the execution it repeats)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be replayed; publish nothing")
    parser.add_argument(
        "--remap",
        action="store_true",
        help=f"republish the original change from {CHANGES} so the current instance configuration maps it again",
    )
    parser.add_argument("--bootstrap-servers", help="Kafka (default: KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument("--redis-url", help="Redis with the writer's applied changes (default: REDIS_URL)")
    parser.add_argument(
        "--writer-group",
        default=os.environ.get("TANDEM_WRITER_GROUP_ID", "tandem-writer"),
        help="the writer's consumer group, for --from retry (default: TANDEM_WRITER_GROUP_ID or tandem-writer)",
    )
    parser.set_defaults(handler=run)


REGISTRARS.append(register)
