"""The catch-up poller's state in Redis: its cursor per instance and the lease on polling an instance. The users
whose unsigned delivery was deferred to the catch-up read are `tandem_shared.redis.deferred.RedisDeferredDeliveries`,
the adapter the writer reads them with too.

Thin over `tandem_shared.redis`: the keys are `keys.poller_cursor_key` / `poller_lock_key`, the leases
`lease.OwnedLeases`.
"""

from __future__ import annotations

from redis.asyncio import Redis

from tandem_ingest.domain.cursor import Cursor
from tandem_shared.redis.keys import poller_cursor_key, poller_lock_key
from tandem_shared.redis.lease import OwnedLeases


class RedisCursorStore:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def load(self, instance_id: str) -> Cursor | None:
        raw = await self._redis.get(poller_cursor_key(instance_id))
        return None if raw is None else Cursor.from_json(raw)

    async def save(self, instance_id: str, cursor: Cursor) -> None:
        await self._redis.set(poller_cursor_key(instance_id), cursor.to_json())


class PollerLocks:
    """One poller per instance across replicas: an owner lease per instance, renewed by every `hold` while this
    replica keeps polling; a crashed owner's lease expires."""

    def __init__(self, redis: Redis, ttl_s: float) -> None:
        self._leases = OwnedLeases(redis, max(1.0, ttl_s))

    async def hold(self, instance_id: str) -> bool:
        return await self._leases.hold(poller_lock_key(instance_id))

    async def release_all(self) -> None:
        await self._leases.release_all()
