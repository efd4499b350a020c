"""Changes held for a paused instance: one Redis stream per instance, released in order on resume.

Holding must not stop the `tandem.changes` partition (other instances share it), so a paused instance's changes are
parked here and their offsets committed. While an instance has a backlog, its new changes queue behind it, so a
contact's changes are always processed in the order they arrived. One mapper replica at a time releases an
instance's backlog (an owner lease), so several replicas never process the same held change twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from tandem_shared.contracts import ChangeEvent, InstanceConfig
from tandem_shared.redis.held import HeldStore
from tandem_shared.redis.state import StateTransaction


@dataclass(frozen=True)
class HeldChange:
    entry_id: str
    event: ChangeEvent
    while_paused: bool
    version: int

    def discarded_by(self, instance: InstanceConfig) -> bool:
        """An operator resumed with --discard-buffered after this change was held while paused.

        The flag belongs to the resume that set it: a change held under that version or a later one (queued behind
        the backlog, or held by a later pause) is not discarded by it.
        """
        return self.while_paused and instance.discard_held_on_resume and self.version < instance.version


def _fields(event: ChangeEvent, *, while_paused: bool, version: int) -> dict[str, str]:
    return {"event": event.model_dump_json(), "paused": "1" if while_paused else "0", "version": str(version)}


class HeldChanges:
    def __init__(self, store: HeldStore) -> None:
        self._store = store

    @staticmethod
    def park_with(writes: StateTransaction, event: ChangeEvent, *, while_paused: bool, version: int) -> None:
        """Parks the change in the transaction `writes` (parked when, and only when, the rest of it applies)."""
        writes.park_held(event.instance_id, _fields(event, while_paused=while_paused, version=version))

    async def backlog(self, instance_id: str) -> int:
        return await self._store.backlog(instance_id)

    async def oldest(self, instance_id: str, count: int = 50) -> list[HeldChange]:
        return [
            HeldChange(
                entry_id=entry_id,
                event=ChangeEvent.model_validate_json(fields["event"]),
                while_paused=fields.get("paused") == "1",
                version=int(fields.get("version", "0")),
            )
            for entry_id, fields in await self._store.oldest(instance_id, count)
        ]

    async def remove(self, instance_id: str, entry_id: str) -> None:
        await self._store.remove(instance_id, entry_id)

    async def discard(self, instance_id: str) -> None:
        await self._store.discard(instance_id)

    async def acquire(self, instance_id: str, owner: str) -> bool:
        return await self._store.acquire(instance_id, owner)

    async def refresh(self, instance_id: str, owner: str) -> None:
        await self._store.renew(instance_id, owner)

    async def release(self, instance_id: str, owner: str) -> None:
        await self._store.release(instance_id, owner)
