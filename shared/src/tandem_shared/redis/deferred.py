"""accessplanit deliveries deferred to the catch-up read, as the writer sees them (`keys.poller_deferred_key`).

Ingest keeps the set (`tandem_ingest.poll_state.RedisDeferredUsers`: a user is added when its unsigned delivery is
answered without a read, and removed by a read that began after it arrived). While a user is there, accessplanit
holds an edit of it Tandem has not read yet: the writer asks before writing over that user
(`tandem_writer.deferred_edits`).
"""

from __future__ import annotations

from typing import Protocol

from redis.asyncio import Redis

from tandem_shared.redis.keys import poller_deferred_key


class DeferredDeliveries(Protocol):
    async def arrived_ms(self, instance_id: str, user_id: str) -> int | None:
        """When the user's latest deferred delivery arrived (epoch ms); None when none waits for the catch-up read."""
        ...


class RedisDeferredDeliveries:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def arrived_ms(self, instance_id: str, user_id: str) -> int | None:
        score = await self._redis.zscore(poller_deferred_key(instance_id), user_id)
        return None if score is None else int(score)
