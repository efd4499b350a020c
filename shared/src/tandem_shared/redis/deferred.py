"""accessplanit deliveries deferred to the catch-up read (`keys.poller_deferred_key`): one adapter for both services.

Ingest keeps the set (`tandem_ingest.catch_up` adds a user when its unsigned delivery is answered without a read; the
poller removes it by a read that began after it arrived). While a user is there, accessplanit holds an edit of it
Tandem has not read yet: the writer asks before writing over that user (`tandem_writer.deferred_edits`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, cast

from redis.asyncio import Redis

from tandem_shared.redis.client import text
from tandem_shared.redis.keys import poller_deferred_key


@dataclass(frozen=True)
class Deferral:
    """A user whose unsigned delivery was answered before the user was read: the catch-up poll owes it a read."""

    user_id: str
    arrived_ms: int  # when the (latest) deferred delivery arrived, epoch ms


class DeferredDeliveries(Protocol):
    async def arrived_ms(self, instance_id: str, user_id: str) -> int | None:
        """When the user's latest deferred delivery arrived (epoch ms); None when none waits for the catch-up read."""
        ...


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


class RedisDeferredDeliveries:
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
        return [Deferral(text(user), int(ms)) for user, ms in found]

    async def settle(self, instance_id: str, user_ids: Sequence[str], read_at_ms: int) -> int:
        if not user_ids:
            return 0
        return int(await self._settle(keys=[poller_deferred_key(instance_id)], args=[read_at_ms, *user_ids]))

    async def arrived_ms(self, instance_id: str, user_id: str) -> int | None:
        score = await self._redis.zscore(poller_deferred_key(instance_id), user_id)
        return None if score is None else int(score)
