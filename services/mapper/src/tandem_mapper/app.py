"""Mapper: ChangeEvents from `tandem.changes` → SyncCommands on `tandem.commands`, with a trace of each decision."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from faststream import AckPolicy
from faststream.asgi import AsgiFastStream, AsgiResponse, get, make_ping_asgi
from faststream.kafka import KafkaBroker

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
    Headers,
    InstanceConfig,
    Stage,
    System,
    TraceRecord,
    TraceStatus,
    message_key,
    utcnow,
)
from tandem_shared.contracts.topics import CHANGES, COMMANDS
from tandem_shared.instance_store import TopicInstanceRegistry
from tandem_shared.instances import InstanceRegistry
from tandem_shared.kafka import make_broker
from tandem_shared.logging import configure_logging, get_logger
from tandem_shared.metrics import MAPPER_DECISIONS, MetricsEndpoint
from tandem_shared.sync_state import SyncStateStore
from tandem_shared.tracing import StepRecorder, new_id, publish_trace

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
        self, broker: KafkaBroker, settings: MapperSettings, registry: InstanceRegistry, state: SyncStateStore
    ) -> None:
        self._broker = broker
        self._settings = settings
        self._registry = registry
        self._state = state
        self._held = HeldChanges(state.redis)
        self._owner = uuid.uuid4().hex
        self._releasing: dict[str, asyncio.Task[None]] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._running = False
        registry.on_change(self._instance_changed)

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
        instance = self._registry.get(event.instance_id)
        if instance is None:
            await publish_trace(
                self._broker, _step(event).finish(TraceStatus.SKIPPED, f"Unknown instance {event.instance_id}")
            )
            return
        if instance.paused:
            await self._hold(event, instance, "Held: the instance is paused; processed in order on resume")
            return
        waiting = await self._held.backlog(instance.id)
        if waiting:
            await self._hold(event, instance, f"Held behind {waiting} earlier change(s) being released in order")
            self.kick(instance.id)
            return
        await self.process(event, instance)

    async def _hold(self, event: ChangeEvent, instance: InstanceConfig, summary: str) -> None:
        await self._held.park(event, while_paused=instance.paused, version=instance.version)
        record = _step(event).finish(TraceStatus.HELD, summary, data_in=event.fields)
        await publish_trace(self._broker, record)

    async def process(self, event: ChangeEvent, instance: InstanceConfig) -> None:
        step = _step(event)
        known = await self._knowledge(event, instance)
        decision = decide(event, instance, known, command_id=new_id(), now=utcnow())
        MAPPER_DECISIONS.labels(flow=event.flow.value, status=decision.status.value).inc()
        for line in decision.logs:
            step.log("info", line)
        for command in (decision.command, decision.repair):
            if command is not None:
                await self._state.expect_write(command)
                await self._broker.publish(
                    command,
                    topic=COMMANDS,
                    key=message_key(command.instance_id, command.identity.contact_key).encode(),
                    headers={
                        Headers.INSTANCE_ID: command.instance_id,
                        Headers.EXECUTION_ID: command.execution_id,
                        Headers.IDEMPOTENCY_KEY: command.idempotency_key,
                    },
                )
        await self._apply(instance.id, decision.updates)
        await publish_trace(self._broker, self._record(step, event, decision))

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

    async def _knowledge(self, event: ChangeEvent, instance: InstanceConfig) -> Knowledge:
        email = event_email(event)
        if email is None or event.kind in _NOT_SYNCED or not instance.direction.allows(event.flow):
            return Knowledge()
        source, target = event.source, event.source.other
        user_id = event.identity.accessplanit_user_id
        previous = None
        if source is System.ACCESSPLANIT and user_id:
            previous = await self._state.user_email(instance.id, user_id)
        old = old_address(event, previous)
        return Knowledge(
            source=await self._state.load(instance.id, source, email),
            target=await self._state.load(instance.id, target, email),
            source_old=await self._state.load(instance.id, source, old) if old else None,
            target_old=await self._state.load(instance.id, target, old) if old else None,
            previous_email=previous,
        )

    async def _apply(self, instance_id: str, updates: list[StateUpdate]) -> None:
        for update in updates:
            if isinstance(update, MoveState):
                await self._state.move(instance_id, update.system, update.old_email, update.new_email)
            elif isinstance(update, MergeSeen):
                await self._state.merge(
                    instance_id,
                    update.system,
                    update.email,
                    update.digests,
                    source_ts_ms=update.source_ts_ms,
                    origin="seen",
                )
            elif isinstance(update, RememberUserEmail):
                await self._state.set_user_email(instance_id, update.user_id, update.email)

    # -- releasing held changes ------------------------------------------------------------------------------

    def _instance_changed(self, old: InstanceConfig | None, new: InstanceConfig | None) -> None:
        if new is not None and not new.paused and (old is None or old.paused):
            self.kick(new.id)

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
            await publish_trace(self._broker, record)
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


def register(broker: KafkaBroker, settings: MapperSettings, mapper: Mapper) -> None:
    # Offsets are committed after the handler; an infrastructure failure (Kafka, Redis) seeks back and retries.
    @broker.subscriber(
        CHANGES,
        group_id=settings.group_id,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        max_workers=settings.workers,
    )
    async def on_change(event: ChangeEvent) -> None:
        await mapper.on_change(event)


def build(
    settings: MapperSettings, registry: InstanceRegistry | None = None, state: SyncStateStore | None = None
) -> tuple[KafkaBroker, Mapper, InstanceRegistry, SyncStateStore]:
    broker = make_broker(settings.kafka_bootstrap_servers, client_id="tandem-mapper")
    registry = registry or TopicInstanceRegistry(settings.kafka_bootstrap_servers)
    state = state or SyncStateStore.from_url(settings.redis_url, ttl_s=settings.state_ttl_days * 24 * 3600)
    mapper = Mapper(broker, settings, registry, state)
    register(broker, settings, mapper)
    return broker, mapper, registry, state


@get
async def live(_: object) -> AsgiResponse:
    return AsgiResponse(b"", status_code=204)


def create_app(settings: MapperSettings | None = None, registry: InstanceRegistry | None = None) -> AsgiFastStream:
    settings = settings or MapperSettings()
    configure_logging("mapper", settings.log_level, settings.log_json)
    broker, mapper, registry, state = build(settings, registry)
    return AsgiFastStream(
        broker,
        asgi_routes=[
            ("/health/live", live),
            ("/health/ready", make_ping_asgi(broker, timeout=5.0)),
            ("/metrics", MetricsEndpoint()),
        ],
        on_startup=[registry.start],
        after_startup=[mapper.start],
        on_shutdown=[mapper.stop],
        after_shutdown=[registry.stop, state.close],
    )
