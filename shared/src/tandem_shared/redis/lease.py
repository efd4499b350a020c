"""Owner leases: one holder of a key at a time across replicas, kept alive by renewing, lost on a crash.

A lease is a key whose value is its owner's token and whose TTL is the lease. Only the owner renews or releases it
(compare-and-set in Lua, so a lease that expired and was taken by another owner is never extended or deleted by
the first one). Used by the catch-up poller (one ingest replica polls an instance) and by the release of held
changes (one mapper replica releases an instance's backlog).

The writer's claim on a contact (`tandem_shared.redis.idempotency`) is not one of these: it is taken in the same
script as the command's in-flight mark and the check of its applied record, and released with them, so it cannot
be a lease of its own without losing that atomicity.
"""

from __future__ import annotations

import contextlib
import uuid

from redis.asyncio import Redis
from redis.exceptions import RedisError

# Takes the lease, or keeps it (with a fresh TTL) when this owner holds it already.
_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Leases:
    """Leases of `ttl_s` on any key; the owner token is the caller's (one per process or per component)."""

    def __init__(self, redis: Redis, ttl_s: float) -> None:
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    async def acquire(self, key: str, owner: str) -> bool:
        """True when `owner` holds the lease now (taken, or already its own and renewed)."""
        return bool(await self._acquire(keys=[key], args=[owner, self._ttl_ms]))

    async def renew(self, key: str, owner: str) -> bool:
        """Extends the lease while it is still `owner`'s; False when it was lost."""
        return bool(await self._renew(keys=[key], args=[owner, self._ttl_ms]))

    async def release(self, key: str, owner: str) -> bool:
        """Gives the lease up if it is still `owner`'s; False when it had expired or passed to another owner."""
        return bool(await self._release(keys=[key], args=[owner]))


class OwnedLeases:
    """The leases one owner (this process, under a token of its own) holds on several keys: each `hold` takes or
    renews one; `release_all` gives back every one still held, as the owner shuts down (best effort: a lease that
    cannot be released expires on its own)."""

    def __init__(self, redis: Redis, ttl_s: float) -> None:
        self._owner = uuid.uuid4().hex
        self._leases = Leases(redis, ttl_s)
        self._held: set[str] = set()

    async def hold(self, key: str) -> bool:
        """True while this owner holds the lease on `key` (taken now, or renewed)."""
        held = await self._leases.acquire(key, self._owner)
        (self._held.add if held else self._held.discard)(key)
        return held

    async def release_all(self) -> None:
        for key in list(self._held):
            with contextlib.suppress(RedisError, OSError):
                await self._leases.release(key, self._owner)
        self._held.clear()
