"""Each change is published once, however many times it is received (webhook retries, webhook and poller both).

A claim in Redis keyed by the deterministic event id: `pending` while the publish is in flight (short TTL, so a
crashed holder cannot block the event for long), `done` once Kafka acknowledged (kept for `done_ttl_s`, longer than
any redelivery or poll overlap), deleted when the publish failed so the next delivery tries again.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

_PENDING = b"pending"
_DONE = b"done"


class Claim(StrEnum):
    NEW = "new"  # ours to publish
    DONE = "done"  # published before: a duplicate
    IN_FLIGHT = "in_flight"  # being published by someone else right now


class ClaimsUnavailable(RuntimeError):
    pass


class EventClaims(Protocol):
    async def claim(self, instance_id: str, event_id: str) -> Claim: ...

    async def confirm(self, instance_id: str, event_id: str) -> None: ...

    async def release(self, instance_id: str, event_id: str) -> None: ...


class RedisEventClaims:
    def __init__(self, redis: Redis, *, pending_ttl_s: float, done_ttl_s: float) -> None:
        self._redis = redis
        self._pending_ms = max(1, int(pending_ttl_s * 1000))
        self._done_ms = max(1, int(done_ttl_s * 1000))

    @staticmethod
    def key(instance_id: str, event_id: str) -> str:
        return f"tandem:ingest:event:{instance_id}:{event_id}"

    async def claim(self, instance_id: str, event_id: str) -> Claim:
        key = self.key(instance_id, event_id)
        try:
            if await self._redis.set(key, _PENDING, nx=True, px=self._pending_ms):
                return Claim.NEW
            state = await self._redis.get(key)
        except (RedisError, OSError) as exc:
            raise ClaimsUnavailable(str(exc) or type(exc).__name__) from exc
        # Vanished between the two calls (a pending claim expired): someone is or was on it; ask again later.
        return Claim.DONE if state == _DONE else Claim.IN_FLIGHT

    async def confirm(self, instance_id: str, event_id: str) -> None:
        try:
            await self._redis.set(self.key(instance_id, event_id), _DONE, px=self._done_ms)
        except (RedisError, OSError) as exc:
            raise ClaimsUnavailable(str(exc) or type(exc).__name__) from exc

    async def release(self, instance_id: str, event_id: str) -> None:
        try:
            await self._redis.delete(self.key(instance_id, event_id))
        except (RedisError, OSError) as exc:
            raise ClaimsUnavailable(str(exc) or type(exc).__name__) from exc
