"""The request budget a vendor client pays from, and its in-process stand-in.

Services pay from `tandem_shared.ratelimit.RateBudget`, shared through Redis by every replica. A process that
cannot reach Tandem's Redis (the operator's CLI on a laptop) pays from `LocalRateBudget`: the same contract, counted
in this process only.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Protocol

from tandem_shared.ratelimit import BudgetExhausted


class RequestBudget(Protocol):
    async def take(self, key: str, *, max_wait_s: float) -> None: ...

    async def block(self, key: str, seconds: float) -> None: ...


class LocalRateBudget:
    """A sliding window per key in this process; `take` and `block` behave as `RateBudget`'s."""

    def __init__(self, *, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._taken: dict[str, deque[float]] = {}
        self._blocked_until: dict[str, float] = {}

    def try_take(self, key: str) -> float:
        now = time.monotonic()
        blocked = self._blocked_until.get(key, 0.0) - now
        if blocked > 0:
            return blocked
        taken = self._taken.setdefault(key, deque())
        while taken and taken[0] <= now - self.window_s:
            taken.popleft()
        if len(taken) < self.limit:
            taken.append(now)
            return 0.0
        return taken[0] + self.window_s - now if taken else self.window_s

    async def take(self, key: str, *, max_wait_s: float) -> None:
        waited = 0.0
        while (wait_s := self.try_take(key)) > 0:
            if waited + wait_s > max_wait_s:
                raise BudgetExhausted(key, wait_s)
            await asyncio.sleep(wait_s)
            waited += wait_s

    async def block(self, key: str, seconds: float) -> None:
        until = time.monotonic() + max(1.0, seconds)
        self._blocked_until[key] = max(self._blocked_until.get(key, 0.0), until)
