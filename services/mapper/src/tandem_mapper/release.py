"""Releasing held changes: in order, by one replica at a time per instance, when an instance resumes.

A resume seen on `tandem.instances` starts the release at once; a batch that found an instance's backlog starts
it too; and every replica sweeps now and then for backlogs no one is releasing (after a restart or a replica's
death). A deletion ends it and drops what was held. What is done with each held change is the service's
(`release_one`).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime

from tandem_mapper.held import HeldChange, HeldChanges
from tandem_shared.contracts import InstanceConfig
from tandem_shared.instances import InstanceRegistry
from tandem_shared.logging import get_logger

log = get_logger("tandem.mapper")

ReleaseOne = Callable[[HeldChange, InstanceConfig], Awaitable[None]]


class HeldRelease:
    def __init__(
        self, held: HeldChanges, registry: InstanceRegistry, release_one: ReleaseOne, *, sweep_s: float
    ) -> None:
        self._held = held
        self._registry = registry
        self._release_one = release_one
        self._sweep_s = sweep_s
        self._owner = uuid.uuid4().hex
        self._releasing: dict[str, asyncio.Task[None]] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._running = False

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

    def instance_changed(self, old: InstanceConfig | None, new: InstanceConfig | None) -> None:
        """The registry's listener: an instance that resumes has its held changes released."""
        if new is not None and not new.paused and (old is None or old.paused):
            self.kick(new.id)

    async def instance_deleted(self, instance_id: str, _: datetime) -> None:
        """The registry's listener: a deleted instance's release ends here and now, and its held changes go
        (`tandem instances delete` removes them too; whichever comes first, nothing held is released after the
        tombstone)."""
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
            await asyncio.sleep(self._sweep_s)
