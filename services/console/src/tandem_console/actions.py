"""What the console changes: an instance's paused flag, and replays of executions.

Both go through Kafka like everything else: the paused flag is a new version of the instance's configuration on
`tandem.instances`; a replay is the execution's original ChangeEvent published again to `tandem.changes`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from faststream.kafka import KafkaBroker

from tandem_console.domain import source_event
from tandem_console.store import TraceStore
from tandem_shared.contracts import (
    ChangeEvent,
    Headers,
    InstanceConfig,
    Stage,
    TraceStatus,
    Trigger,
    deterministic_event_id,
    message_key,
    utcnow,
)
from tandem_shared.contracts.topics import CHANGES
from tandem_shared.instances import InstanceRegistry
from tandem_shared.metrics import EVENTS_OUT
from tandem_shared.tracing import StepRecorder, new_id, publish_trace

PutInstance = Callable[[InstanceConfig], Awaitable[None]]


class ActionError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class PauseResult:
    instance: InstanceConfig
    changed: bool


class InstanceActions:
    def __init__(
        self, registry: InstanceRegistry, put: PutInstance, *, publish_timeout_s: float, settle_timeout_s: float = 5.0
    ) -> None:
        self._registry = registry
        self._put = put
        self._publish_timeout_s = publish_timeout_s
        self._settle_timeout_s = settle_timeout_s

    async def set_paused(self, instance_id: str, paused: bool, *, discard_held: bool = False) -> PauseResult:
        current = self._registry.get(instance_id)
        if current is None:
            raise ActionError(404, f"no instance {instance_id!r}")
        if current.paused == paused:
            return PauseResult(current, changed=False)
        update: dict[str, object] = {"paused": paused, "version": current.version + 1}
        if not paused:
            update["discard_held_on_resume"] = discard_held
        new = InstanceConfig.model_validate({**current.model_dump(), **update})
        try:
            await asyncio.wait_for(self._put(new), timeout=self._publish_timeout_s)
        except Exception as exc:  # Kafka did not take the new configuration: nothing changed
            raise ActionError(503, f"the instance configuration could not be published: {exc}") from exc
        await self._settled(instance_id, new.version)
        return PauseResult(self._registry.get(instance_id) or new, changed=True)

    async def _settled(self, instance_id: str, version: int) -> None:
        """Wait until our own view of the topic has the new version, so the page shows what is in force.

        Bounded: the configuration is on the topic already; a slow view only delays what the page shows.
        """
        deadline = asyncio.get_running_loop().time() + self._settle_timeout_s
        while asyncio.get_running_loop().time() < deadline:
            current = self._registry.get(instance_id)
            if current is not None and current.version >= version:
                return
            await asyncio.sleep(0.05)


@dataclass(frozen=True)
class Replayed:
    replayed_execution_id: str
    execution_id: str
    event_id: str


class Replayer:
    def __init__(self, broker: KafkaBroker, store: TraceStore) -> None:
        self._broker = broker
        self._store = store

    async def replay(self, execution_id: str) -> Replayed:
        records = (await asyncio.to_thread(self._store.records, [execution_id])).get(execution_id)
        if not records:
            raise ActionError(404, f"no execution {execution_id!r}")
        original = source_event(records)
        if original is None:
            raise ActionError(
                409, "this execution has no traced source event (ingest, poller or replay step) to replay"
            )
        return await self.publish_replay(original, replayed_execution_id=execution_id)

    async def publish_replay(self, original: ChangeEvent, *, replayed_execution_id: str) -> Replayed:
        execution_id = new_id()
        event = ChangeEvent.model_validate(
            {
                **original.model_dump(),
                "execution_id": execution_id,
                "original_execution_id": replayed_execution_id,
                "trigger": Trigger.REPLAY,
                # A new delivery of the same change: it must not be taken for a redelivery of the original.
                "event_id": deterministic_event_id("replay", original.event_id, execution_id),
                "received_at": utcnow(),
            }
        )
        step = StepRecorder(
            stage=Stage.REPLAY,
            execution_id=execution_id,
            original_execution_id=replayed_execution_id,
            instance_id=event.instance_id,
            flow=event.flow,
            trigger=Trigger.REPLAY,
            contact_email=event.identity.email,
            accessplanit_user_id=event.identity.accessplanit_user_id,
        )
        await self._broker.publish(
            event,
            topic=CHANGES,
            key=message_key(event.instance_id, event.identity.contact_key).encode(),
            headers={
                Headers.INSTANCE_ID: event.instance_id,
                Headers.EXECUTION_ID: event.execution_id,
                Headers.ORIGINAL_EXECUTION_ID: replayed_execution_id,
                Headers.EVENT_ID: event.event_id,
                Headers.REPLAYED_FROM: replayed_execution_id,
            },
        )
        EVENTS_OUT.labels(service="console", topic=CHANGES).inc()
        step.log("info", f"change event of execution {replayed_execution_id} published again as {execution_id}")
        record = step.finish(
            TraceStatus.SUCCEEDED,
            f"Replay of execution {replayed_execution_id} requested from the console",
            data_in={"replayed_execution_id": replayed_execution_id},
            data_out=event.model_dump(mode="json"),
        )
        await publish_trace(self._broker, record)
        return Replayed(replayed_execution_id, execution_id, event.event_id)
