"""The catch-up poller's state in Redis: its cursor per instance, the lease on polling an instance, and the users
whose unsigned delivery was deferred to the catch-up read (`catch_up`).

Thin over `tandem_shared.redis`: the keys are `keys.poller_cursor_key` / `poller_lock_key` / `poller_deferred_key`,
the leases `lease.OwnedLeases`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from redis.asyncio import Redis

from tandem_ingest.domain.cursor import Cursor
from tandem_ingest.domain.deferral import Deferral
from tandem_shared.redis.keys import poller_cursor_key, poller_deferred_key, poller_lock_key
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


# KEYS[1] the deferred set. ARGV[1] when the read started (ms), then user ids. Removes a user only while its
# deferred delivery arrived no later than the read started: a delivery that arrived after it keeps its place.
_SETTLE = """
local removed = 0
local read_at = tonumber(ARGV[1])
for i = 2, #ARGV do
  local arrived = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if arrived and tonumber(arrived) <= read_at then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return removed
"""


class RedisDeferredUsers:
    """Users whose unsigned delivery waits for the catch-up read: a sorted set per instance, scored by the arrival
    (ms) of the user's latest deferred delivery."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._settle = redis.register_script(_SETTLE)

    async def defer(self, instance_id: str, user_id: str, arrived_ms: int) -> None:
        # GT: a later delivery moves the user's arrival forward, an earlier one (retried late) never moves it back.
        await self._redis.zadd(poller_deferred_key(instance_id), {user_id: arrived_ms}, gt=True)

    async def due(self, instance_id: str, arrived_before_ms: int, limit: int) -> list[Deferral]:
        found = cast(
            list[tuple[bytes | str, float]],
            await self._redis.zrangebyscore(
                poller_deferred_key(instance_id), "-inf", arrived_before_ms, start=0, num=limit, withscores=True
            ),
        )
        return [Deferral(_text(user), int(ms)) for user, ms in found]

    async def settle(self, instance_id: str, user_ids: Sequence[str], read_at_ms: int) -> int:
        if not user_ids:
            return 0
        return int(await self._settle(keys=[poller_deferred_key(instance_id)], args=[read_at_ms, *user_ids]))


def _text(member: bytes | str) -> str:
    return member.decode() if isinstance(member, bytes) else member
