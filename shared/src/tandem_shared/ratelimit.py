"""A request budget shared by every replica of every service: a sliding-window log in Redis.

One budget per (vendor account, endpoint): every request first takes a slot; when the window is full the caller
learns how long until the oldest slot leaves it, and either waits (bounded) or gives the work back for later. The
clock is Redis's own (`TIME` inside the script), so replicas with drifting clocks still agree.
"""

from __future__ import annotations

import asyncio
import uuid

from redis.asyncio import Redis

from tandem_shared.redis.keys import budget_block_key

# KEYS[1] the window's log (sorted set: score = ms), KEYS[2] the block key set after the vendor answered 429.
# ARGV[1] limit, ARGV[2] window in ms, ARGV[3] a unique member id. Returns 0 when a slot was taken, else the wait in ms.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local blocked = redis.call('PTTL', KEYS[2])
if blocked > 0 then return blocked end
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
if limit <= 0 then return window end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
"""

# Only ever lengthens a block: a shorter Retry-After from a second replica must not cut a longer one short.
_BLOCK = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 0
"""


class BudgetExhausted(Exception):
    """No slot within the caller's patience; `retry_after_s` says when one frees up."""

    def __init__(self, key: str, retry_after_s: float) -> None:
        super().__init__(f"request budget exhausted; a slot frees up in {retry_after_s:.1f}s")
        self.key = key
        self.retry_after_s = retry_after_s


class RateBudget:
    def __init__(self, redis: Redis, *, limit: int, window_s: float) -> None:
        self._redis = redis
        self.limit = limit
        self.window_s = window_s
        self._take = redis.register_script(_TAKE)
        self._block = redis.register_script(_BLOCK)

    async def try_take(self, key: str) -> float:
        """Take a slot now if there is one: 0.0, or the seconds until one frees up (nothing taken)."""
        wait_ms = await self._take(
            keys=[key, budget_block_key(key)], args=[self.limit, int(self.window_s * 1000), uuid.uuid4().hex]
        )
        return int(wait_ms) / 1000

    async def take(self, key: str, *, max_wait_s: float) -> None:
        """Take a slot, sleeping while one frees up within `max_wait_s`; otherwise raise BudgetExhausted."""
        waited = 0.0
        while True:
            wait_s = await self.try_take(key)
            if wait_s == 0:
                return
            if waited + wait_s > max_wait_s:
                raise BudgetExhausted(key, wait_s)
            await asyncio.sleep(wait_s)
            waited += wait_s

    async def block(self, key: str, seconds: float) -> None:
        """The vendor said 429: nobody sharing this budget sends anything for `seconds`."""
        await self._block(keys=[budget_block_key(key)], args=[max(1, int(seconds * 1000))])
