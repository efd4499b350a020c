"""KeyedStrategy through the strategy protocol: failed handlings retried, records held until due, closing and
joining within a grace period, folding that fails, progress reported."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest
from aiokafka import TopicPartition

from support.waiting import eventually
from tandem_shared.contracts import utcnow
from tandem_shared.kafka.partitioned import InboundRecord, KeyedStrategy

PARTITION = TopicPartition("tandem.commands.retry-1", 0)


def rec(offset: int, key: bytes | None = None) -> InboundRecord:
    return InboundRecord(PARTITION.topic, 0, offset, key if key is not None else b"k%d" % offset, b"{}", {}, 0)


class Handler:
    def __init__(self) -> None:
        self.calls: list[int] = []
        self.done: list[int] = []
        self.cancelled: list[int] = []
        self.failures: dict[int, int] = {}
        self.gates: dict[int, asyncio.Event] = {}

    async def __call__(self, record: InboundRecord, absorbed: Sequence[InboundRecord]) -> None:
        self.calls.append(record.offset)
        if self.failures.get(record.offset, 0) > 0:
            self.failures[record.offset] -= 1
            raise ConnectionError("Redis is away")
        try:
            if record.offset in self.gates:
                await self.gates[record.offset].wait()
        except asyncio.CancelledError:
            self.cancelled.append(record.offset)
            raise
        self.done.append(record.offset)


async def settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


async def _true(value: bool) -> bool:
    return value


async def test_a_failing_handler_is_retried_on_the_same_record_and_nothing_overtakes_it() -> None:
    handler = Handler()
    handler.failures[1] = 2
    strategy = KeyedStrategy(PARTITION, handler, retry_backoff_s=(0.01, 0.02))
    for offset in (0, 1, 2):
        strategy.submit(rec(offset))
    await eventually(lambda: _true(handler.done == [0, 1, 2]), timeout=5, interval=0.01)
    assert handler.calls == [0, 1, 1, 1, 2]
    assert strategy.poll() == 3
    await strategy.terminate()


async def test_a_record_not_yet_due_is_held_and_nothing_after_it_starts() -> None:
    handler = Handler()
    due_at = utcnow() + timedelta(seconds=1)

    def due(record: InboundRecord) -> datetime | None:
        return due_at if record.offset == 1 else None

    strategy = KeyedStrategy(PARTITION, handler, concurrency=3, due=due)
    for offset in (0, 1, 2):
        strategy.submit(rec(offset))
    await settle()
    assert handler.calls == [0]
    assert strategy.poll() == 1
    await eventually(lambda: _true(handler.done == [0, 1, 2]), timeout=5, interval=0.01)
    assert utcnow() >= due_at
    assert strategy.poll() == 3
    await strategy.terminate()


async def test_a_held_record_is_never_reported_finished_while_others_finish_around_it() -> None:
    handler = Handler()
    handler.gates[0] = asyncio.Event()
    in_an_hour = utcnow() + timedelta(hours=1)
    strategy = KeyedStrategy(PARTITION, handler, concurrency=3, due=lambda r: in_an_hour if r.offset == 1 else None)
    for offset in (0, 1, 2):
        strategy.submit(rec(offset))
    await settle()
    handler.gates[0].set()
    await settle()
    assert handler.done == [0]
    assert strategy.poll() == 1  # 1 is held, 2 waits behind it: neither is finished
    started = time.monotonic()
    await strategy.join(grace_s=30)
    assert time.monotonic() - started < 5, "closing ends the hold at once"
    assert handler.calls == [0]
    assert strategy.poll() == 1


async def test_join_lets_the_records_in_hand_finish_and_leaves_the_buffered_ones() -> None:
    handler = Handler()
    handler.gates[0] = asyncio.Event()
    strategy = KeyedStrategy(PARTITION, handler)
    for offset in (0, 1):
        strategy.submit(rec(offset))
    await settle()
    joining = asyncio.create_task(strategy.join(grace_s=30))
    await settle()
    assert not joining.done()
    handler.gates[0].set()
    await asyncio.wait_for(joining, timeout=5)
    assert handler.done == [0]
    assert strategy.poll() == 1
    assert strategy.buffered == 1


async def test_what_is_not_finished_within_the_grace_period_is_abandoned_and_never_reported() -> None:
    handler = Handler()
    handler.gates[1] = asyncio.Event()
    strategy = KeyedStrategy(PARTITION, handler, concurrency=2)
    for offset in (0, 1, 2):
        strategy.submit(rec(offset))
    await settle()
    assert strategy.poll() == 1
    await strategy.join(grace_s=0.05)
    assert handler.cancelled == [1]
    assert handler.done == [0, 2]
    assert strategy.poll() == 1


async def test_a_fold_that_fails_leaves_each_record_handled_on_its_own() -> None:
    handler = Handler()
    folded: list[list[int]] = []

    async def handle(record: InboundRecord, absorbed: Sequence[InboundRecord]) -> None:
        folded.append([record.offset, *(r.offset for r in absorbed)])
        await handler(record, absorbed)

    def fold(record: InboundRecord, waiting: Sequence[InboundRecord]) -> Sequence[InboundRecord]:
        raise ValueError("unreadable")

    strategy = KeyedStrategy(PARTITION, handle, fold=fold)
    for offset in (0, 1, 2):
        strategy.submit(rec(offset, key=b"same"))
    await eventually(lambda: _true(handler.done == [0, 1, 2]), timeout=5, interval=0.01)
    assert folded == [[0], [1], [2]]
    assert strategy.poll() == 3
    await strategy.terminate()


async def test_progress_is_reported_after_every_finished_record() -> None:
    handler = Handler()
    seen: list[int | None] = []
    strategy: KeyedStrategy | None = None

    def progress() -> None:
        assert strategy is not None
        seen.append(strategy.poll())

    strategy = KeyedStrategy(PARTITION, handler, progress=progress)
    for offset in (5, 6, 7):
        strategy.submit(rec(offset))
    await settle()
    assert seen == [6, 7, 8]
    await strategy.terminate()


async def test_a_closed_strategy_takes_no_more_records() -> None:
    strategy = KeyedStrategy(PARTITION, Handler())
    strategy.close()
    with pytest.raises(RuntimeError):
        strategy.submit(rec(0))
    await strategy.join(grace_s=1)
    assert strategy.poll() is None
