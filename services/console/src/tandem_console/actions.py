"""What the console changes: an instance's paused flag, and replays of executions.

Both go through Kafka like everything else: the paused flag is a new version of the instance's configuration on
`tandem.instances`; a replay is the execution's original ChangeEvent, read from `tandem.changes`, published there
again (`tandem_shared.replay`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from tandem_console.store import TraceStore
from tandem_shared.contracts import InstanceConfig
from tandem_shared.contracts.topics import CHANGES
from tandem_shared.instances import InstanceRegistry
from tandem_shared.kafka import KafkaConnection, Producer
from tandem_shared.replay import Note, Replays, find_changes

PutInstance = Callable[[InstanceConfig], Awaitable[None]]
# The change is on Kafka moments after its execution's first step started; the margin covers clock skew.
SEARCH_MARGIN = timedelta(minutes=5)


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
    def __init__(self, connection: KafkaConnection, producer: Producer, store: TraceStore) -> None:
        self._connection = connection
        self._replays = Replays(producer)
        self._store = store

    async def replay(self, execution_id: str) -> Replayed:
        """Publishes the execution's change again, once: a change replayed before is not published a second time."""
        summary = await asyncio.to_thread(self._store.execution, execution_id)
        if summary is None:
            raise ActionError(404, f"no execution {execution_id!r}")
        since = summary.started_at - SEARCH_MARGIN
        changes = await find_changes(self._connection, execution_ids=[execution_id], since=since)
        found = changes.by_execution.get(execution_id)
        if found is None:
            raise ActionError(409, f"this execution has no source event on {CHANGES} to replay")
        original = found[0]
        earlier = changes.replay_of(original)
        if earlier is not None:
            return Replayed(execution_id, earlier.execution_id, earlier.event_id)
        note = Note(
            log=f"change event of execution {execution_id} published again",
            summary=f"Replay of execution {execution_id} requested from the console",
            data_in={"replayed_execution_id": execution_id},
        )
        event = await self._replays.change(
            original, original_execution_id=execution_id, replayed_from=execution_id, note=note
        )
        return Replayed(execution_id, event.execution_id, event.event_id)
