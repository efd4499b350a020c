"""A partition worker folds a contact's queued records into one handling and still commits every offset."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import TopicPartition

from tandem_writer.consumer import _PartitionWorker
from tandem_writer.delivery import InboundRecord


def rec(offset: int, key: bytes) -> InboundRecord:
    return InboundRecord("tandem.commands", 0, offset, key, b"{}", {}, 0)


class Owner:
    """The parts of PartitionedConsumer a worker calls; folds every later record with the same key."""

    def __init__(self) -> None:
        self.handled: list[tuple[int, list[int]]] = []

    async def _wait_until_due(self, record: InboundRecord) -> None:
        return None

    def _absorbable(self, record: InboundRecord, waiting: Sequence[InboundRecord]) -> list[InboundRecord]:
        return [r for r in waiting if r.key == record.key]

    async def _handle(self, record: InboundRecord, absorbed: Sequence[InboundRecord] = ()) -> None:
        self.handled.append((record.offset, [r.offset for r in absorbed]))

    def _maybe_resume(self, worker: object) -> None:
        return None


async def run(records: list[InboundRecord]) -> tuple[Owner, _PartitionWorker]:
    owner = Owner()
    worker = _PartitionWorker(owner, TopicPartition("tandem.commands", 0))  # type: ignore[arg-type]
    for r in records:
        worker.queue.put_nowait(r)
    for _ in range(50):
        await asyncio.sleep(0)
    worker.draining = True
    worker.task.cancel()
    return owner, worker


async def test_folded_records_are_handled_once_and_their_offsets_committed_in_order() -> None:
    owner, worker = await run([rec(10, b"a"), rec(11, b"b"), rec(12, b"a"), rec(13, b"c")])
    assert owner.handled == [(10, [12]), (11, []), (13, [])]
    assert worker.finished == 14


async def test_a_folded_record_at_the_tail_is_committed_with_the_write_that_carried_it() -> None:
    owner, worker = await run([rec(20, b"a"), rec(21, b"a"), rec(22, b"a")])
    assert owner.handled == [(20, [21, 22])]
    assert worker.finished == 23


async def test_nothing_is_committed_past_a_record_still_waiting() -> None:
    owner = Owner()
    worker = _PartitionWorker(owner, TopicPartition("tandem.commands", 0))  # type: ignore[arg-type]
    worker.queue.put_nowait(rec(30, b"a"))
    worker.queue.put_nowait(rec(31, b"b"))
    worker.queue.put_nowait(rec(32, b"a"))
    gate = asyncio.Event()

    async def slow(record: InboundRecord, absorbed: Sequence[InboundRecord] = ()) -> None:
        owner.handled.append((record.offset, [r.offset for r in absorbed]))
        if record.offset == 31:
            await gate.wait()

    owner._handle = slow  # type: ignore[method-assign]
    for _ in range(20):
        await asyncio.sleep(0)
    assert worker.finished == 31  # 30 done (and 32 with it), 31 still in hand
    gate.set()
    for _ in range(20):
        await asyncio.sleep(0)
    assert worker.finished == 33
    worker.draining = True
    worker.task.cancel()
