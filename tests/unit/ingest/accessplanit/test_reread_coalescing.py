"""Unsigned deliveries read the user back; re-reads of one user within a short window share one read."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tandem_ingest.accessplanit_changes import CoalescingUserReader
from tandem_shared.contracts import InstanceConfig
from tandem_shared.instances import demo_instance

WINDOW = 0.1


class Clock:
    """Time moves only when the test says so; `sleep` wakes when it has moved far enough."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, asyncio.Event]] = []

    async def sleep(self, delay: float) -> None:
        woken = asyncio.Event()
        self._sleepers.append((self.now + delay, woken))
        await woken.wait()

    async def advance(self, seconds: float) -> None:
        self.now += seconds
        for entry in [s for s in self._sleepers if s[0] <= self.now]:
            self._sleepers.remove(entry)
            entry[1].set()
        await settle()


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


class FakeReader:
    """Records when each read started; a read can be held open to model a slow request."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.reads: list[tuple[str, float]] = []
        self.hold: asyncio.Event | None = None
        self.fail: Exception | None = None

    async def get_user(self, instance: InstanceConfig, user_id: str) -> dict[str, Any] | None:
        started = self.clock.now
        self.reads.append((user_id, started))
        if self.hold is not None:
            await self.hold.wait()
        if self.fail is not None:
            raise self.fail
        return {"ID": user_id, "read_at": started, "read": len(self.reads)}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def inner(clock: Clock) -> FakeReader:
    return FakeReader(clock)


@pytest.fixture
def reader(inner: FakeReader, clock: Clock) -> CoalescingUserReader:
    return CoalescingUserReader(inner, WINDOW, sleep=clock.sleep)


async def deliver(reader: CoalescingUserReader, user_id: str = "7") -> asyncio.Task[dict[str, Any] | None]:
    task = asyncio.create_task(reader.get_user(demo_instance(), user_id))
    await settle()
    return task


async def test_deliveries_within_the_window_share_one_read_taken_after_the_last_arrived(
    reader: CoalescingUserReader, inner: FakeReader, clock: Clock
) -> None:
    arrivals = []
    tasks = []
    for _ in range(3):
        arrivals.append(clock.now)
        tasks.append(await deliver(reader))
        await clock.advance(0.03)
    assert inner.reads == []  # trailing edge: nothing read yet
    await clock.advance(WINDOW)
    records = [await t for t in tasks]
    assert len(inner.reads) == 1
    assert records[0] == records[1] == records[2]
    assert all(records[0] is not None and records[0]["read_at"] >= at for at in arrivals)


async def test_a_delivery_arriving_while_the_read_runs_gets_a_read_of_its_own(
    reader: CoalescingUserReader, inner: FakeReader, clock: Clock
) -> None:
    inner.hold = asyncio.Event()
    first = await deliver(reader)
    await clock.advance(WINDOW)
    assert len(inner.reads) == 1  # started, still running
    arrived = clock.now
    second = await deliver(reader)
    inner.hold.set()
    await settle()
    assert (await first)["read"] == 1  # type: ignore[index]
    assert not second.done()
    await clock.advance(WINDOW)
    record = await second
    assert record is not None and record["read"] == 2 and record["read_at"] >= arrived
    assert len(inner.reads) == 2


async def test_each_user_is_read_separately(reader: CoalescingUserReader, inner: FakeReader, clock: Clock) -> None:
    ada, alan = await deliver(reader, "7"), await deliver(reader, "8")
    await clock.advance(WINDOW)
    assert ((await ada) or {})["ID"] == "7"
    assert ((await alan) or {})["ID"] == "8"
    assert sorted(u for u, _ in inner.reads) == ["7", "8"]


async def test_a_failed_read_fails_every_joined_delivery_and_the_next_one_reads_again(
    reader: CoalescingUserReader, inner: FakeReader, clock: Clock
) -> None:
    inner.fail = RuntimeError("accessplanit answered 503")
    tasks = [await deliver(reader), await deliver(reader)]
    await clock.advance(WINDOW)
    for task in tasks:
        with pytest.raises(RuntimeError, match="503"):
            await task
    inner.fail = None
    retry = await deliver(reader)
    await clock.advance(WINDOW)
    assert ((await retry) or {})["read"] == 2


async def test_a_caller_that_gives_up_does_not_cancel_the_shared_read(
    reader: CoalescingUserReader, inner: FakeReader, clock: Clock
) -> None:
    quitter, stayer = await deliver(reader), await deliver(reader)
    quitter.cancel()
    await settle()
    await clock.advance(WINDOW)
    assert ((await stayer) or {})["read"] == 1


async def test_a_zero_window_reads_once_per_delivery(inner: FakeReader, clock: Clock) -> None:
    direct = CoalescingUserReader(inner, 0, sleep=clock.sleep)
    assert ((await direct.get_user(demo_instance(), "7")) or {})["read"] == 1
    assert ((await direct.get_user(demo_instance(), "7")) or {})["read"] == 2


async def test_steadily_spaced_deliveries_of_one_user_cost_one_read_per_interval(
    inner: FakeReader, clock: Clock
) -> None:
    """A delivery every 0.2 s fell outside each 0.1 s window and cost a read each; now at most one a second."""
    reader = CoalescingUserReader(inner, WINDOW, min_interval_s=1.0, sleep=clock.sleep, clock=lambda: clock.now)
    tasks = []
    for _ in range(15):  # three seconds of deliveries
        tasks.append(await deliver(reader))
        await clock.advance(0.2)
    await clock.advance(1.0)
    records = [await t for t in tasks]
    starts = [at for _, at in inner.reads]
    assert len(starts) <= 4
    assert all(later - earlier >= 1.0 - 1e-9 for earlier, later in zip(starts, starts[1:], strict=False))
    assert all(record is not None for record in records)
    other = await deliver(reader, "8")  # another user is not held back by this one's interval
    await clock.advance(WINDOW)
    assert (await other) is not None and inner.reads[-1] == ("8", clock.now)
