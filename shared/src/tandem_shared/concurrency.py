"""Limits on simultaneous requests to a vendor, shared by every replica of a service.

Mailchimp allows 10 simultaneous connections per account and answers the 11th with 429; Tandem keeps below that
itself. `RedisConcurrencyLimiter` is a counting semaphore in Redis: a sorted set of lease ids scored by their
expiry. A holder renews its lease while its request runs; a crashed replica stops renewing, so its slots come back
once their leases expire. Expiry uses the Redis server's clock, so replicas with skewed clocks agree.

`LocalConcurrencyLimiter` is the same contract inside one process (a single replica, tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tandem_shared.logging import get_logger
from tandem_shared.redis.client import connect_url
from tandem_shared.redis.keys import CONCURRENCY_PREFIX, concurrency_key

log = get_logger("tandem.concurrency")


class SlotUnavailable(RuntimeError):
    """No slot freed up within the wait bound; the caller should retry the whole operation later."""


class LimiterUnavailable(RuntimeError):
    """The shared store (Redis) cannot be reached, so no slot can be granted safely."""


class Lease:
    """One granted slot. By default it is freed when the `slot()` block exits."""

    def __init__(self, lease_id: str) -> None:
        self.lease_id = lease_id
        self.hold_s = 0.0

    def keep_for(self, seconds: float) -> None:
        """Keep the slot occupied for `seconds` after the block exits.

        For a request the client gave up on: the vendor may still be working on it and counting it against the
        limit (Mailchimp keeps a request up to 120 s), so freeing the slot at once could cause the 11th connection.
        """
        self.hold_s = max(self.hold_s, seconds)


class ConcurrencyLimiter(Protocol):
    def slot(self, name: str) -> AbstractAsyncContextManager[Lease]: ...

    async def close(self) -> None: ...


# KEYS[1]: the semaphore's sorted set. ARGV: lease id, limit, lease ms. Returns 1 when granted.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[1], tonumber(last[2]) - now + 1000)
return 1
"""

# KEYS[1]: the sorted set. ARGV: lease id, ms from now. Pushes the lease's expiry out (never in); 0 if it is gone.
_EXTEND = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], 'GT', now + tonumber(ARGV[2]), ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[1], tonumber(last[2]) - now + 1000)
return 1
"""


_JITTER = random.Random()


class Backoff:
    """Capped exponential backoff, with jitter by default: waiters spread out instead of polling Redis in lockstep.

    Without jitter the delays are exactly `initial_s`, twice that, … up to `max_s` (one process retrying alone).
    """

    def __init__(
        self, initial_s: float, max_s: float, rng: random.Random | None = None, *, jitter: bool = True
    ) -> None:
        self._initial = initial_s
        self._max = max_s
        # One generator for all: a `random.Random()` each seeds itself from os.urandom, and the writer builds a
        # Backoff for every step of every command (most never retry).
        self._rng = rng or _JITTER
        self._jitter = jitter
        self._attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self._max, self._initial * (2**self._attempt))
        self._attempt += 1
        return self._rng.uniform(ceiling / 2, ceiling) if self._jitter else ceiling


class RedisConcurrencyLimiter:
    def __init__(
        self,
        redis: Redis,
        *,
        limit: int,
        lease_s: float = 30.0,
        max_wait_s: float = 60.0,
        backoff_initial_s: float = 0.01,
        backoff_max_s: float = 0.25,
        prefix: str = CONCURRENCY_PREFIX,
        owns_client: bool = False,
    ) -> None:
        """`owns_client`: `close` closes `redis` too (a client shared with other stores is closed by its opener)."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._redis = redis
        self._lease_ms = max(1, int(lease_s * 1000))
        self._max_wait_s = max_wait_s
        self._backoff = (backoff_initial_s, backoff_max_s)
        self._prefix = prefix
        self._owns_client = owns_client
        self._acquire = redis.register_script(_ACQUIRE)
        self._extend = redis.register_script(_EXTEND)
        # This process's waiters per semaphore, oldest first: a slot given back here wakes the oldest at once
        # instead of leaving the slot idle until some waiter's backoff ends (other replicas still poll).
        self._waiters: dict[str, deque[asyncio.Future[None]]] = {}

    @classmethod
    def from_url(cls, url: str, *, limit: int, lease_s: float, max_wait_s: float) -> RedisConcurrencyLimiter:
        return cls(connect_url(url), limit=limit, lease_s=lease_s, max_wait_s=max_wait_s, owns_client=True)

    def key(self, name: str) -> str:
        return concurrency_key(name, self._prefix)

    async def holders(self, name: str) -> list[str]:
        """Lease ids currently counted against `name` (expired ones included until the next acquire sweeps them)."""
        members = await self._redis.zrange(self.key(name), 0, -1)
        return [m.decode() if isinstance(m, bytes) else str(m) for m in members]

    async def try_acquire(self, name: str, lease_id: str) -> bool:
        try:
            granted = await self._acquire(keys=[self.key(name)], args=[lease_id, self.limit, self._lease_ms])
        except RedisError as exc:
            raise LimiterUnavailable(f"Redis is unavailable: {exc}") from exc
        return bool(granted)

    async def _wait_for_slot(self, name: str, lease_id: str) -> None:
        deadline = time.monotonic() + self._max_wait_s
        backoff = Backoff(*self._backoff)
        while not await self.try_acquire(name, lease_id):
            delay = backoff.next_delay()
            if time.monotonic() + delay > deadline:
                raise SlotUnavailable(f"all {self.limit} slots of {name} stayed busy for {self._max_wait_s:.0f}s")
            await self._sleep_or_wake(name, delay)

    async def _sleep_or_wake(self, name: str, delay: float) -> None:
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._waiters.setdefault(name, deque())
        queue.append(woken)
        try:
            await asyncio.wait_for(asyncio.shield(woken), timeout=delay)
        except TimeoutError:
            pass
        finally:
            if woken in queue:
                queue.remove(woken)

    def _wake_one(self, name: str) -> None:
        queue = self._waiters.get(name)
        while queue:
            woken = queue.popleft()
            if not woken.done():
                woken.set_result(None)
                return

    async def _extend_by(self, name: str, lease_id: str, ms: int) -> bool:
        return bool(await self._extend(keys=[self.key(name)], args=[lease_id, ms]))

    async def _renew_forever(self, name: str, lease_id: str) -> None:
        while True:
            await asyncio.sleep(self._lease_ms / 3000)
            try:
                if not await self._extend_by(name, lease_id, self._lease_ms):
                    # The lease expired (the process stalled longer than the lease); its slot may be someone's now.
                    log.warning("concurrency lease lost before the request finished", semaphore=name)
                    return
            except RedisError as exc:
                log.warning("concurrency lease not renewed; retrying", semaphore=name, error=str(exc))

    async def _finish(self, name: str, lease: Lease) -> None:
        try:
            if lease.hold_s > 0:
                await self._extend_by(name, lease.lease_id, int(lease.hold_s * 1000))
            else:
                await self._redis.zrem(self.key(name), lease.lease_id)
                self._wake_one(name)
        except RedisError as exc:  # the lease expires on its own; nothing is lost but a few seconds of one slot
            log.warning("concurrency lease not released; it will expire", semaphore=name, error=str(exc))

    @asynccontextmanager
    async def slot(self, name: str) -> AsyncIterator[Lease]:
        lease = Lease(uuid.uuid4().hex)
        try:
            await self._wait_for_slot(name, lease.lease_id)
        except BaseException:
            # Cancelled between Redis granting the slot and us hearing of it: give it back rather than leak it.
            with contextlib.suppress(RedisError):
                await asyncio.shield(self._redis.zrem(self.key(name), lease.lease_id))
            raise
        renewal = asyncio.create_task(self._renew_forever(name, lease.lease_id), name=f"lease-{name}")
        try:
            yield lease
        finally:
            renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewal
            await asyncio.shield(self._finish(name, lease))

    async def close(self) -> None:
        if self._owns_client:
            await self._redis.aclose()


class LocalConcurrencyLimiter:
    """The same contract within one process: an asyncio semaphore per name."""

    def __init__(self, *, limit: int, max_wait_s: float = 60.0) -> None:
        self.limit = limit
        self._max_wait_s = max_wait_s
        self._semaphores: dict[str, asyncio.Semaphore] = {}
        self._busy: Counter[str] = Counter()
        self._timers: set[asyncio.TimerHandle] = set()

    def in_use(self, name: str) -> int:
        return self._busy[name]

    @asynccontextmanager
    async def slot(self, name: str) -> AsyncIterator[Lease]:
        semaphore = self._semaphores.setdefault(name, asyncio.Semaphore(self.limit))
        try:
            await asyncio.wait_for(semaphore.acquire(), timeout=self._max_wait_s)
        except TimeoutError as exc:
            raise SlotUnavailable(f"all {self.limit} slots of {name} stayed busy for {self._max_wait_s:.0f}s") from exc
        self._busy[name] += 1
        lease = Lease(uuid.uuid4().hex)
        try:
            yield lease
        finally:
            if lease.hold_s > 0:
                self._release_later(name, semaphore, lease.hold_s)
            else:
                self._release(name, semaphore)

    def _release(self, name: str, semaphore: asyncio.Semaphore) -> None:
        self._busy[name] -= 1
        semaphore.release()

    def _release_later(self, name: str, semaphore: asyncio.Semaphore, delay_s: float) -> None:
        def fire() -> None:
            self._timers.discard(handle)
            self._release(name, semaphore)

        handle = asyncio.get_running_loop().call_later(delay_s, fire)
        self._timers.add(handle)

    async def close(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
