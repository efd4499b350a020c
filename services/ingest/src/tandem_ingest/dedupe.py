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

from tandem_shared.redis.client import text
from tandem_shared.redis.keys import ingest_claim_key
from tandem_shared.redis.pipeline import AutoPipeline

_PENDING = "pending"
_DONE = "done"


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
        # Under load every webhook asks Redis twice (claim, confirm): the requests of one loop tick share a round trip.
        self._redis = AutoPipeline(redis)
        self._pending_ms = max(1, int(pending_ttl_s * 1000))
        self._done_ms = max(1, int(done_ttl_s * 1000))

    async def claim(self, instance_id: str, event_id: str) -> Claim:
        key = ingest_claim_key(instance_id, event_id)
        try:
            # SET NX GET (Redis 7): sets the pending claim only if there is none and answers the one it found, in
            # one atomic command: nil means the claim is ours.
            [state] = await self._redis.call(lambda p: p.set(key, _PENDING, nx=True, px=self._pending_ms, get=True))
        except (RedisError, OSError) as exc:
            raise ClaimsUnavailable(str(exc) or type(exc).__name__) from exc
        if state is None:
            return Claim.NEW
        return Claim.DONE if text(state) == _DONE else Claim.IN_FLIGHT

    async def confirm(self, instance_id: str, event_id: str) -> None:
        try:
            key = ingest_claim_key(instance_id, event_id)
            await self._redis.call(lambda p: p.set(key, _DONE, px=self._done_ms))
        except (RedisError, OSError) as exc:
            raise ClaimsUnavailable(str(exc) or type(exc).__name__) from exc

    async def release(self, instance_id: str, event_id: str) -> None:
        try:
            key = ingest_claim_key(instance_id, event_id)
            await self._redis.call(lambda p: p.delete(key))
        except (RedisError, OSError) as exc:
            raise ClaimsUnavailable(str(exc) or type(exc).__name__) from exc
