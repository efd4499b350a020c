"""Changes held for a paused instance: one Redis stream per instance (`keys.held_key`), and the lease of the
mapper replica releasing them (`keys.held_lock_key`). Entries are stored as text fields; what they mean is the
mapper's (`tandem_mapper.held`). Parking a change goes with the state of its batch: `StateTransaction.park_held`.
"""

from __future__ import annotations

from typing import Protocol

from redis.asyncio import Redis

from tandem_shared.redis.client import text
from tandem_shared.redis.keys import held_key, held_lock_key
from tandem_shared.redis.lease import Leases

HeldEntry = tuple[str, dict[str, str]]  # (stream entry id, fields)


class HeldStore(Protocol):
    async def backlog(self, instance_id: str) -> int: ...

    async def oldest(self, instance_id: str, count: int) -> list[HeldEntry]: ...

    async def remove(self, instance_id: str, entry_id: str) -> None: ...

    async def discard(self, instance_id: str) -> None:
        """Every held change of the instance (it was deleted)."""
        ...

    async def acquire(self, instance_id: str, owner: str) -> bool:
        """The lease on releasing the instance's held changes."""
        ...

    async def renew(self, instance_id: str, owner: str) -> bool: ...

    async def release(self, instance_id: str, owner: str) -> bool: ...


class RedisHeldStore:
    def __init__(self, redis: Redis, *, lease_s: float = 30.0) -> None:
        self._redis = redis
        self._leases = Leases(redis, lease_s)

    async def backlog(self, instance_id: str) -> int:
        return int(await self._redis.xlen(held_key(instance_id)))

    async def oldest(self, instance_id: str, count: int) -> list[HeldEntry]:
        entries = await self._redis.xrange(held_key(instance_id), count=count) or []
        return [(text(entry_id or ""), {text(k): text(v) for k, v in (raw or {}).items()}) for entry_id, raw in entries]

    async def remove(self, instance_id: str, entry_id: str) -> None:
        await self._redis.xdel(held_key(instance_id), entry_id)

    async def discard(self, instance_id: str) -> None:
        await self._redis.delete(held_key(instance_id))

    async def acquire(self, instance_id: str, owner: str) -> bool:
        return await self._leases.acquire(held_lock_key(instance_id), owner)

    async def renew(self, instance_id: str, owner: str) -> bool:
        return await self._leases.renew(held_lock_key(instance_id), owner)

    async def release(self, instance_id: str, owner: str) -> bool:
        return await self._leases.release(held_lock_key(instance_id), owner)
