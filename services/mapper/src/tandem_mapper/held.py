"""Changes held for a paused instance: one Redis stream per instance, released in order on resume.

Holding must not stop the `tandem.changes` partition (other instances share it), so a paused instance's changes are
parked here and their offsets committed. While an instance has a backlog, its new changes queue behind it, so a
contact's changes are always processed in the order they arrived. One mapper replica at a time releases an
instance's backlog (a lock with a lease), so several replicas never process the same held change twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from tandem_shared.contracts import ChangeEvent, InstanceConfig
from tandem_shared.sync_state import StateWrites, held_key, held_lock_key, text

# Refreshing a lease only while it is still ours; releasing it likewise.
_REFRESH = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


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
    def __init__(self, redis: Redis, lease_ms: int = 30_000) -> None:
        self._redis = redis
        self._lease_ms = lease_ms
        self._refresh = redis.register_script(_REFRESH)
        self._unlock = redis.register_script(_UNLOCK)

    async def park(self, event: ChangeEvent, *, while_paused: bool, version: int) -> str:
        fields = _fields(event, while_paused=while_paused, version=version)
        return str(await self._redis.xadd(held_key(event.instance_id), fields))  # type: ignore[arg-type]

    @staticmethod
    def park_with(writes: StateWrites, event: ChangeEvent, *, while_paused: bool, version: int) -> None:
        """As `park`, in the transaction of `writes` (parked when, and only when, the rest of it applies)."""
        fields = _fields(event, while_paused=while_paused, version=version)
        writes.add(lambda pipe: pipe.xadd(held_key(event.instance_id), fields))  # type: ignore[arg-type]

    async def backlog(self, instance_id: str) -> int:
        return int(await self._redis.xlen(held_key(instance_id)))

    async def oldest(self, instance_id: str, count: int = 50) -> list[HeldChange]:
        held = []
        for entry_id, raw in await self._redis.xrange(held_key(instance_id), count=count) or []:
            fields = {text(k): text(v) for k, v in (raw or {}).items()}
            held.append(
                HeldChange(
                    entry_id=text(entry_id or ""),
                    event=ChangeEvent.model_validate_json(fields["event"]),
                    while_paused=fields.get("paused") == "1",
                    version=int(fields.get("version", "0")),
                )
            )
        return held

    async def remove(self, instance_id: str, entry_id: str) -> None:
        await self._redis.xdel(held_key(instance_id), entry_id)

    async def acquire(self, instance_id: str, owner: str) -> bool:
        return bool(await self._redis.set(held_lock_key(instance_id), owner, nx=True, px=self._lease_ms))

    async def refresh(self, instance_id: str, owner: str) -> None:
        await self._refresh(keys=[held_lock_key(instance_id)], args=[owner, self._lease_ms])

    async def release(self, instance_id: str, owner: str) -> None:
        await self._unlock(keys=[held_lock_key(instance_id)], args=[owner])
