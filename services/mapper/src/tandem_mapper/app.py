"""Mapper: ChangeEvents from `tandem.changes` → SyncCommands on `tandem.commands`, with a trace of each decision."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiokafka import ConsumerRecord
from faststream import AckPolicy
from faststream.asgi import AsgiFastStream, AsgiResponse, get, make_ping_asgi
from faststream.kafka import KafkaBroker
from faststream.message import StreamMessage
from pydantic import ValidationError

from tandem_mapper.batching import rounds
from tandem_mapper.domain import (
    Decision,
    Knowledge,
    MergeSeen,
    MoveState,
    RememberUserEmail,
    StateUpdate,
    decide,
    event_email,
    old_address,
)
from tandem_mapper.held import HeldChange, HeldChanges
from tandem_mapper.settings import MapperSettings
from tandem_shared.contracts import (
    ChangeEvent,
    ChangeKind,
    InstanceConfig,
    Stage,
    SyncCommand,
    System,
    TraceRecord,
    TraceStatus,
    utcnow,
)
from tandem_shared.contracts.envelopes import command_envelope, trace_envelope
from tandem_shared.contracts.topics import CHANGES
from tandem_shared.ids import new_id
from tandem_shared.instance_store import TopicInstanceRegistry
from tandem_shared.instances import InstanceRegistry, missing_instance
from tandem_shared.kafka import KafkaConnection, KafkaProducer, Producer, send_envelope
from tandem_shared.logging import configure_logging, get_logger
from tandem_shared.metrics import MAPPER_DECISIONS, MetricsEndpoint
from tandem_shared.redis.client import connect
from tandem_shared.redis.state import RedisStateStore, StateStore, StateTransaction
from tandem_shared.sync.rules import StateSnapshot
from tandem_shared.tracing import StepRecorder, publish_trace

log = get_logger("tandem.mapper")

_NOT_SYNCED = (ChangeKind.DELETED, ChangeKind.UNSUBSCRIBED, ChangeKind.CLEANED)


def _step(event: ChangeEvent) -> StepRecorder:
    return StepRecorder(
        stage=Stage.MAPPER,
        execution_id=event.execution_id,
        original_execution_id=event.original_execution_id,
        instance_id=event.instance_id,
        flow=event.flow,
        trigger=event.trigger,
        contact_email=event.identity.email,
        accessplanit_user_id=event.identity.accessplanit_user_id,
    )


class Mapper:
    def __init__(
        self, producer: Producer, settings: MapperSettings, registry: InstanceRegistry, state: StateStore
    ) -> None:
        self._producer = producer
        self._settings = settings
        self._registry = registry
        self._state = state
        self._held = HeldChanges(state.held)
        self._owner = uuid.uuid4().hex
        self._releasing: dict[str, asyncio.Task[None]] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._running = False
        registry.on_change(self._instance_changed)
        registry.on_delete(self._instance_deleted)

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """After the broker is connected: release what was held for resumed instances, and keep looking."""
        self._running = True
        self._sweeper = asyncio.create_task(self._sweep(), name="held-sweeper")

    async def stop(self) -> None:
        self._running = False
        tasks = [t for t in (self._sweeper, *self._releasing.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._releasing.clear()

    # -- consuming -------------------------------------------------------------------------------------------

    async def on_change(self, event: ChangeEvent) -> None:
        await self.on_changes([event])

    async def on_changes(self, events: Sequence[ChangeEvent]) -> None:
        """Decide a batch of changes; returns once everything it led to is durable (the offsets may be committed).

        Round trips per batch, not per change: per round (see `batching`) one Redis read, the notes of the writes
        about to be sent, one wait for Kafka's acknowledgement of the round's commands and trace records, then the
        round's state in one transaction. The state is written only once the commands it reflects are
        acknowledged: a batch that fails is decided again, and a change whose state was not written yet is decided
        the same way again (its command's idempotency key depends on its content only, so the writer applies it
        once); a change of an earlier round whose state was written finds nothing new and sends nothing twice.
        """
        batch = _Batch(self._state.transaction())
        instances: dict[str, InstanceConfig | None] = {}
        candidates: list[tuple[ChangeEvent, InstanceConfig]] = []
        for event in events:
            if event.instance_id not in instances:
                instances[event.instance_id] = self._registry.get(event.instance_id)
            instance = instances[event.instance_id]
            if instance is None:
                record = _step(event).finish(TraceStatus.SKIPPED, missing_instance(self._registry, event.instance_id))
                batch.deliveries.append(await self._send_trace(record))
            elif instance.paused:
                summary = "Held: the instance is paused; processed in order on resume"
                await self._hold(batch, event, instance, summary)
            else:
                candidates.append((event, instance))

        plan = [[candidates[i] for i in positions] for positions in rounds([e for e, _ in candidates])]
        backlogs = list(dict.fromkeys(instance.id for _, instance in candidates))
        snapshot: StateSnapshot | None = await self._load(plan[0] if plan else [], backlogs=backlogs)
        waiting = {i: n for i in backlogs if snapshot is not None and (n := snapshot.backlog(i))}
        behind = set(waiting)
        if behind:
            for event, instance in candidates:
                if instance.id in behind:
                    summary = f"Held behind {waiting[instance.id]} earlier change(s) being released in order"
                    await self._hold(batch, event, instance, summary)
                    waiting[instance.id] += 1
            plan = [kept for work in plan if (kept := [(e, i) for e, i in work if i.id not in behind])]
            snapshot = None  # loaded for a first round that is not the first any more

        for index, work in enumerate(plan):
            known = snapshot if index == 0 and snapshot is not None else await self._load(work)
            await self._decide_round(batch, work, known, last=index == len(plan) - 1)
        if not plan:
            await _wait(batch.deliveries)
            await batch.final_writes.execute()
        for instance_id in behind:
            self.kick(instance_id)

    async def _hold(self, batch: _Batch, event: ChangeEvent, instance: InstanceConfig, summary: str) -> None:
        HeldChanges.park_with(batch.final_writes, event, while_paused=instance.paused, version=instance.version)
        record = _step(event).finish(TraceStatus.HELD, summary, data_in=event.fields)
        batch.deliveries.append(await self._send_trace(record))

    async def process(self, event: ChangeEvent, instance: InstanceConfig) -> None:
        """Decide one change of an instance that is known to take it now (a held change being released)."""
        batch = _Batch(self._state.transaction())
        await self._decide_round(batch, [(event, instance)], await self._load([(event, instance)]), last=True)

    async def _decide_round(
        self, batch: _Batch, work: list[tuple[ChangeEvent, InstanceConfig]], loaded: StateSnapshot, *, last: bool
    ) -> None:
        """Decide changes that share no state; the batch's held changes are parked with its last round's state."""
        known = await self._complete(work, loaded)
        expected = self._state.transaction()
        updates = batch.final_writes if last else self._state.transaction()
        commands: list[SyncCommand] = []
        records: list[TraceRecord] = []
        for event, instance in work:
            step = _step(event)
            decision = decide(event, instance, known[event.event_id], command_id=new_id(), now=utcnow())
            MAPPER_DECISIONS.labels(flow=event.flow.value, status=decision.status.value).inc()
            for line in decision.logs:
                step.log("info", line)
            for command in (decision.command, decision.repair):
                if command is not None:
                    expected.expect_write(command)
                    commands.append(command)
            _apply(updates, instance.id, decision.updates)
            records.append(self._record(step, event, decision))
        # The note of what Tandem is about to write precedes the command: its echo may come back at once.
        await expected.execute()
        for command in commands:
            batch.deliveries.append(await self._send_command(command))
        for record in records:
            batch.deliveries.append(await self._send_trace(record))
        await _wait(batch.deliveries)
        await updates.execute()

    async def _send_command(self, command: SyncCommand) -> asyncio.Future[object]:
        return await send_envelope(self._producer, command_envelope(command))

    async def _send_trace(self, record: TraceRecord) -> asyncio.Future[object]:
        # Waited for with the batch's commands (unlike `publish_trace`): the offsets follow the trace.
        return await send_envelope(self._producer, trace_envelope(record))

    @staticmethod
    def _record(step: StepRecorder, event: ChangeEvent, decision: Decision) -> TraceRecord:
        command = decision.command or decision.repair
        return step.finish(
            decision.status,
            decision.summary,
            data_in=event.fields,
            data_out=command.payload if command else None,
            error=decision.error,
            changes_detected=decision.changes_detected,
        )

    async def _load(
        self, work: Sequence[tuple[ChangeEvent, InstanceConfig]], *, backlogs: Sequence[str] = ()
    ) -> StateSnapshot:
        sides: list[tuple[str, System, str]] = []
        users: list[tuple[str, str]] = []
        for event, instance in work:
            email = _synced_email(event, instance)
            if email is None:
                continue
            sides.extend(_sides(instance.id, event.source, email))
            user_id = event.identity.accessplanit_user_id
            if event.source is System.ACCESSPLANIT and user_id:
                users.append((instance.id, user_id))
            old = old_address(event, None)
            if old:
                sides.extend(_sides(instance.id, event.source, old))
        return await self._state.load_many(sides, user_ids=users, backlogs=backlogs)

    async def _complete(
        self, work: Sequence[tuple[ChangeEvent, InstanceConfig]], loaded: StateSnapshot
    ) -> dict[str, Knowledge]:
        """What `decide` needs for each change; an accessplanit email change needs the old address's state too,
        known only once the user's last address is (a second read, for email changes only)."""
        missing: list[tuple[str, System, str]] = []
        for event, instance in work:
            previous = _previous_email(event, instance, loaded)
            old = old_address(event, previous) if _synced_email(event, instance) else None
            if old:
                missing.extend(s for s in _sides(instance.id, event.source, old) if not loaded.has(*s))
        if missing:
            loaded = loaded.extend(await self._state.load_many(missing))
        known: dict[str, Knowledge] = {}
        for event, instance in work:
            email = _synced_email(event, instance)
            if email is None:
                known[event.event_id] = Knowledge()
                continue
            source, target = event.source, event.source.other
            previous = _previous_email(event, instance, loaded)
            old = old_address(event, previous)
            known[event.event_id] = Knowledge(
                source=loaded.side(instance.id, source, email),
                target=loaded.side(instance.id, target, email),
                source_old=loaded.side(instance.id, source, old) if old else None,
                target_old=loaded.side(instance.id, target, old) if old else None,
                previous_email=previous,
            )
        return known

    # -- releasing held changes ------------------------------------------------------------------------------

    def _instance_changed(self, old: InstanceConfig | None, new: InstanceConfig | None) -> None:
        if new is not None and not new.paused and (old is None or old.paused):
            self.kick(new.id)

    async def _instance_deleted(self, instance_id: str, _: datetime) -> None:
        """A deleted instance's release ends here and now, and its held changes go (`tandem instances delete`
        removes them too; whichever comes first, nothing held is released after the tombstone)."""
        task = self._releasing.pop(instance_id, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            await self._held.discard(instance_id)
        except Exception as exc:  # Redis trouble must not stop the registry; the CLI's purge removes them as well
            log.warning("held changes of a deleted instance not discarded", instance_id=instance_id, error=str(exc))

    def kick(self, instance_id: str) -> None:
        """Release the instance's held changes in the background (no-op when already under way here)."""
        if not self._running:
            return  # the sweeper picks it up once the broker is connected
        task = self._releasing.get(instance_id)
        if task is None or task.done():
            task = asyncio.create_task(self._release(instance_id), name=f"release-{instance_id}")
            self._releasing[instance_id] = task

    async def _release(self, instance_id: str) -> None:
        try:
            while await self._release_once(instance_id):
                pass
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Redis or Kafka trouble: the held changes stay parked; the sweeper tries again
            log.warning("releasing held changes failed; will retry", instance_id=instance_id, error=str(exc))

    async def _release_once(self, instance_id: str) -> bool:
        """One pass under the lock; True when changes arrived while unlocking and another pass is needed."""
        if not await self._held.acquire(instance_id, self._owner):
            return False
        try:
            while True:
                batch = await self._held.oldest(instance_id)
                if not batch:
                    break
                for held in batch:
                    instance = self._registry.get(instance_id)
                    if instance is None or instance.paused:
                        return False
                    await self._release_one(held, instance)
                    await self._held.remove(instance_id, held.entry_id)
                    await self._held.refresh(instance_id, self._owner)
        finally:
            await self._held.release(instance_id, self._owner)
        # A change parked between the last read and the unlock found the lock taken and relies on this check.
        return await self._held.backlog(instance_id) > 0

    async def _release_one(self, held: HeldChange, instance: InstanceConfig) -> None:
        if held.discarded_by(instance):
            summary = "Discarded on resume (--discard-buffered): held while paused, never synced"
            record = _step(held.event).finish(TraceStatus.DISCARDED, summary, data_in=held.event.fields)
            await publish_trace(self._producer, record)
            return
        await self.process(held.event, instance)

    async def _sweep(self) -> None:
        while True:
            try:
                for instance in self._registry.all():
                    if not instance.paused and await self._held.backlog(instance.id):
                        self.kick(instance.id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a Redis hiccup must not end the sweeping for good
                log.warning("held-change sweep failed", error=str(exc))
            await asyncio.sleep(self._settings.held_sweep_s)


@dataclass
class _Batch:
    """What a batch leaves for its end: the writes that go with its last round's state (its held changes, parked
    only when everything else of the batch is durable, so a batch decided again never parks one twice) and the
    publishes to wait for before the offsets are committed."""

    final_writes: StateTransaction
    deliveries: list[asyncio.Future[object]] = field(default_factory=list)


async def _wait(deliveries: list[asyncio.Future[object]]) -> None:
    """Wait for Kafka's acknowledgement of every publish handed to the producer; raise the first refusal."""
    pending = list(deliveries)
    deliveries.clear()
    results = await asyncio.gather(*pending, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


def _synced_email(event: ChangeEvent, instance: InstanceConfig) -> str | None:
    """The address whose state `decide` looks at; None when it decides without any."""
    email = event_email(event)
    if email is None or event.kind in _NOT_SYNCED or not instance.direction.allows(event.flow):
        return None
    return email


def _sides(instance_id: str, source: System, email: str) -> list[tuple[str, System, str]]:
    return [(instance_id, source, email), (instance_id, source.other, email)]


def _previous_email(event: ChangeEvent, instance: InstanceConfig, loaded: StateSnapshot) -> str | None:
    user_id = event.identity.accessplanit_user_id
    if event.source is not System.ACCESSPLANIT or not user_id or _synced_email(event, instance) is None:
        return None
    return loaded.user_email(instance.id, user_id)


def _apply(writes: StateTransaction, instance_id: str, updates: list[StateUpdate]) -> None:
    for update in updates:
        if isinstance(update, MoveState):
            writes.move(instance_id, update.system, update.old_email, update.new_email)
        elif isinstance(update, MergeSeen):
            writes.merge(
                instance_id,
                update.system,
                update.email,
                update.digests,
                source_ts_ms=update.source_ts_ms,
                origin="seen",
            )
        elif isinstance(update, RememberUserEmail):
            writes.set_user_email(instance_id, update.user_id, update.email)


def register(broker: KafkaBroker, settings: MapperSettings, mapper: Mapper) -> None:
    # One consumer takes batches from all its partitions; the offsets are committed after the handler (all of the
    # batch durable). An infrastructure failure (Kafka, Redis) seeks every partition back to its first record of
    # the batch, and the batch is decided again after a pause.
    @broker.subscriber(
        CHANGES,
        group_id=settings.group_id,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        batch=True,
        max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
        decoder=_consumer_records,
    )
    async def on_changes(records: Any) -> None:
        try:
            await mapper.on_changes(_readable(records))
        except Exception:
            await asyncio.sleep(settings.failure_pause_s)
            raise


async def _consumer_records(message: StreamMessage[Any]) -> Any:
    """The batch's records as aiokafka gave them: each is parsed once, by the contract (`_readable`)."""
    return message.raw_message


def _readable(records: Sequence[ConsumerRecord[bytes, bytes]]) -> list[ChangeEvent]:
    events = []
    for record in records:
        try:
            events.append(ChangeEvent.model_validate_json(record.value or b""))
        except ValidationError as exc:
            # Ingest publishes only valid ChangeEvents: this record came from elsewhere. Retrying it would stop every
            # partition of this consumer for good; it stays on the topic, where the log line points to it.
            log.error(
                "unreadable change skipped",
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                errors=exc.error_count(),
            )
    return events


@dataclass(frozen=True)
class Built:
    """The mapper and what it runs on; the caller starts them in this order and stops them in reverse."""

    broker: KafkaBroker
    producer: KafkaProducer
    mapper: Mapper
    registry: InstanceRegistry
    state: StateStore


def build(settings: MapperSettings, registry: InstanceRegistry | None = None, state: StateStore | None = None) -> Built:
    kafka = KafkaConnection.from_settings(settings, "tandem-mapper")
    broker = kafka.broker()
    producer = KafkaProducer(kafka)
    registry = registry or TopicInstanceRegistry(kafka)
    # The mapper's one Redis client, owned (and closed) by its state store.
    state = state or RedisStateStore(connect(settings), ttl_s=settings.state_ttl_days * 24 * 3600, owns_client=True)
    mapper = Mapper(producer, settings, registry, state)
    register(broker, settings, mapper)
    return Built(broker, producer, mapper, registry, state)


@get
async def live(_: object) -> AsgiResponse:
    return AsgiResponse(b"", status_code=204)


def create_app(settings: MapperSettings | None = None, registry: InstanceRegistry | None = None) -> AsgiFastStream:
    settings = settings or MapperSettings()
    configure_logging("mapper", settings.log_level, settings.log_json)
    built = build(settings, registry)
    return AsgiFastStream(
        built.broker,
        asgi_routes=[
            ("/health/live", live),
            ("/health/ready", make_ping_asgi(built.broker, timeout=5.0)),
            ("/metrics", MetricsEndpoint()),
        ],
        # The producer is up before the subscriber takes its first batch and goes only after the last one.
        on_startup=[built.registry.start, built.producer.start],
        after_startup=[built.mapper.start],
        on_shutdown=[built.mapper.stop],
        after_shutdown=[built.producer.stop, built.registry.stop, built.state.close],
    )
