"""The priority gate in front of a vendor budget: lower classes wait while higher ones are waiting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest

from tandem_shared.vendors.priority import Priority, PriorityGate, PriorityWaitTimeout


class OneSlotLimiter:
    """A fake distributed limiter: one slot, granted first come first served, with no idea of priorities."""

    def __init__(self) -> None:
        self._slot = asyncio.Lock()
        self.granted: list[str] = []

    @asynccontextmanager
    async def slot(self, who: str) -> AsyncIterator[None]:
        async with self._slot:
            self.granted.append(who)
            yield


class Caller:
    """A request of one class: waits its turn at the gate, takes the slot, holds it until told to let go."""

    def __init__(self, gate: PriorityGate, limiter: OneSlotLimiter, who: str, priority: Priority) -> None:
        self.who = who
        self.release = asyncio.Event()
        self.task = asyncio.create_task(self._run(gate, limiter, priority))

    async def _run(self, gate: PriorityGate, limiter: OneSlotLimiter, priority: Priority) -> None:
        async with AsyncExitStack() as held:
            async with gate.turn("account", priority):
                await held.enter_async_context(limiter.slot(self.who))
            await self.release.wait()


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_higher_classes_take_the_slot_first_whatever_the_arrival_order() -> None:
    gate, limiter = PriorityGate(), OneSlotLimiter()
    callers = [Caller(gate, limiter, "holder", Priority.LIVE)]
    await settle()
    callers.append(Caller(gate, limiter, "live-1", Priority.LIVE))
    await settle()
    # While a live write waits: reconciliation arrives first, then an authoritative read, then another live write.
    for who, priority in (
        ("reconciliation", Priority.RECONCILIATION),
        ("read", Priority.AUTHORITATIVE_READ),
        ("live-2", Priority.LIVE),
    ):
        callers.append(Caller(gate, limiter, who, priority))
        await settle()
    for caller in callers:  # each lets go of the slot in turn, the next one is granted it
        caller.release.set()
        await settle()
    await asyncio.gather(*(c.task for c in callers))
    assert limiter.granted == ["holder", "live-1", "live-2", "read", "reconciliation"]


async def test_a_caller_already_at_the_limiter_is_not_overtaken() -> None:
    gate, limiter = PriorityGate(), OneSlotLimiter()
    holder = Caller(gate, limiter, "holder", Priority.LIVE)
    await settle()
    recon = Caller(gate, limiter, "reconciliation", Priority.RECONCILIATION)  # nothing higher waits: it goes on
    await settle()
    live = Caller(gate, limiter, "live", Priority.LIVE)
    await settle()
    for caller in (holder, recon, live):
        caller.release.set()
        await settle()
    await asyncio.gather(holder.task, recon.task, live.task)
    assert limiter.granted == ["holder", "reconciliation", "live"]


async def test_lower_classes_wait_at_the_gate_while_a_higher_one_waits_at_the_limiter() -> None:
    gate, limiter = PriorityGate(), OneSlotLimiter()
    holder = Caller(gate, limiter, "holder", Priority.RECONCILIATION)
    await settle()
    live = Caller(gate, limiter, "live", Priority.LIVE)
    await settle()
    recon = Caller(gate, limiter, "reconciliation", Priority.RECONCILIATION)
    read = Caller(gate, limiter, "read", Priority.AUTHORITATIVE_READ)
    await settle()
    assert (gate.waiting("account", Priority.LIVE), gate.waiting("account", Priority.AUTHORITATIVE_READ)) == (1, 1)
    holder.release.set()
    await settle()
    assert limiter.granted == ["holder", "live"]
    assert gate.waiting("account", Priority.LIVE) == 0
    live.release.set()
    await settle()
    assert limiter.granted == ["holder", "live", "read"], "the read goes before reconciliation that came first"
    read.release.set()
    await settle()
    recon.release.set()
    await asyncio.gather(holder.task, live.task, read.task, recon.task)
    assert limiter.granted == ["holder", "live", "read", "reconciliation"]


async def test_classes_never_hold_up_other_budgets_or_their_own_class() -> None:
    gate = PriorityGate()
    async with gate.turn("account-a", Priority.LIVE):
        async with asyncio.timeout(1):
            async with gate.turn("account-b", Priority.RECONCILIATION):
                pass
            async with gate.turn("account-a", Priority.LIVE):
                pass


async def test_a_lower_class_gives_up_after_its_wait_bound_and_leaves_no_trace() -> None:
    gate = PriorityGate()
    async with gate.turn("account", Priority.LIVE):
        with pytest.raises(PriorityWaitTimeout):
            async with gate.turn("account", Priority.RECONCILIATION, max_wait_s=0.05):
                pass
        assert gate.waiting("account", Priority.RECONCILIATION) == 0
    async with asyncio.timeout(1), gate.turn("account", Priority.RECONCILIATION):
        pass


async def test_a_cancelled_higher_class_waiter_lets_the_lower_ones_go() -> None:
    gate, limiter = PriorityGate(), OneSlotLimiter()
    holder = Caller(gate, limiter, "holder", Priority.RECONCILIATION)
    await settle()
    live = Caller(gate, limiter, "live", Priority.LIVE)
    read = Caller(gate, limiter, "read", Priority.AUTHORITATIVE_READ)
    await settle()
    live.task.cancel()
    await settle()
    holder.release.set()
    await settle()
    assert limiter.granted == ["holder", "read"]
    read.release.set()
    await asyncio.gather(holder.task, read.task)
