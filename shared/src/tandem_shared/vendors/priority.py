"""Who goes first to a vendor's shared request budget: live writes, then authoritative reads, then reconciliation.

The budget itself (Mailchimp's connection semaphore, accessplanit's request window) is shared through Redis by
every replica and knows nothing of priorities. `PriorityGate` stands in front of it inside one process: a caller
only starts waiting for the budget while no caller of a higher class is waiting for the same budget, so a
backlog of reads or a reconciliation scan never takes a slot a live write is queueing for. A lower-class caller
already waiting at the budget when a higher one arrives is not overtaken (the budget has no priorities); it is
one request, and everything of its class behind it waits.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from enum import IntEnum


class Priority(IntEnum):
    """Lower value, higher priority."""

    LIVE = 0  # a write carrying a change a person or a vendor just made
    AUTHORITATIVE_READ = 1  # a read whose answer decides something now (a record before a write, a schema check)
    RECONCILIATION = 2  # bulk reads comparing both sides, reports


class PriorityWaitTimeout(TimeoutError):
    """Higher classes kept the budget busy for longer than the caller may wait."""


class PriorityGate:
    """Per budget name: callers of a class wait here while any caller of a higher class is waiting."""

    def __init__(self) -> None:
        self._waiting: dict[str, Counter[Priority]] = {}
        self._changed: dict[str, asyncio.Condition] = {}

    def waiting(self, name: str, priority: Priority) -> int:
        """Callers of `priority` waiting for `name` (at the gate or at the budget behind it)."""
        return self._waiting.get(name, Counter())[priority]

    def _blocked(self, name: str, priority: Priority) -> bool:
        counts = self._waiting[name]
        return any(counts[higher] for higher in Priority if higher < priority)

    @asynccontextmanager
    async def turn(self, name: str, priority: Priority, *, max_wait_s: float | None = None) -> AsyncIterator[None]:
        """Wait until no higher class is waiting for `name`, then acquire the budget inside the block: the caller
        counts as waiting (and holds lower classes back) until the block exits, i.e. until the budget granted it."""
        counts = self._waiting.setdefault(name, Counter())
        changed = self._changed.setdefault(name, asyncio.Condition())
        counts[priority] += 1
        try:
            if self._blocked(name, priority):
                async with changed:
                    try:
                        async with asyncio.timeout(max_wait_s):
                            await changed.wait_for(lambda: not self._blocked(name, priority))
                    except TimeoutError as exc:
                        raise PriorityWaitTimeout(
                            f"requests of higher priority kept {name} busy for {max_wait_s:.0f}s"
                        ) from exc
            yield
        finally:
            counts[priority] -= 1
            if any(counts[lower] for lower in Priority if lower > priority):  # only they can be waiting on us
                async with changed:
                    changed.notify_all()
