"""A partition worker: contacts side by side, each contact in order, folded records handled once, and offsets
committed only below the oldest record not yet done."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import TopicPartition

from tandem_writer.consumer import _PartitionWorker
from tandem_writer.delivery import InboundRecord


def rec(offset: int, key: bytes) -> InboundRecord:
    return InboundRecord("tandem.commands", 0, offset, key, b"{}", {}, 0)


class Owner:
    """The parts of PartitionedConsumer a worker calls. Folds later records with the same key when `fold`;
    records whose offset is in `gates` are held until their gate opens."""

    def __init__(self, fold: bool = True) -> None:
        self.fold = fold
        self.started: list[tuple[int, list[int]]] = []
        self.done: list[int] = []
        self.gates: dict[int, asyncio.Event] = {}

    async def _wait_until_due(self, record: InboundRecord) -> None:
        return None

    def _absorbable(self, record: InboundRecord, waiting: Sequence[InboundRecord]) -> list[InboundRecord]:
        return [r for r in waiting if r.key == record.key] if self.fold else []

    async def _handle(self, record: InboundRecord, absorbed: Sequence[InboundRecord] = ()) -> None:
        self.started.append((record.offset, [r.offset for r in absorbed]))
        if record.offset in self.gates:
            await self.gates[record.offset].wait()
        self.done.append(record.offset)

    def _maybe_resume(self, worker: object) -> None:
        return None


async def settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


async def start(owner: Owner, records: list[InboundRecord], concurrency: int = 1) -> _PartitionWorker:
    worker = _PartitionWorker(owner, TopicPartition("tandem.commands", 0), concurrency)  # type: ignore[arg-type]
    for r in records:
        worker.arrived(r)
    await settle()
    return worker


async def stop(worker: _PartitionWorker) -> None:
    worker.drain()
    worker.task.cancel()
    await asyncio.gather(worker.task, return_exceptions=True)


async def test_folded_records_are_handled_once_and_their_offsets_committed_in_order() -> None:
    owner = Owner()
    worker = await start(owner, [rec(10, b"a"), rec(11, b"b"), rec(12, b"a"), rec(13, b"c")])
    assert owner.started == [(10, [12]), (11, []), (13, [])]
    assert worker.finished == 14
    await stop(worker)


async def test_a_folded_record_at_the_tail_is_committed_with_the_write_that_carried_it() -> None:
    owner = Owner()
    worker = await start(owner, [rec(20, b"a"), rec(21, b"a"), rec(22, b"a")])
    assert owner.started == [(20, [21, 22])]
    assert worker.finished == 23
    await stop(worker)


async def test_nothing_is_committed_past_a_record_still_in_hand() -> None:
    owner = Owner()
    owner.gates[31] = asyncio.Event()
    worker = await start(owner, [rec(30, b"a"), rec(31, b"b"), rec(32, b"a")])
    assert worker.finished == 31  # 30 done (and 32 folded into it), 31 still in hand
    owner.gates[31].set()
    await settle()
    assert worker.finished == 33
    await stop(worker)


async def test_other_contacts_go_ahead_while_one_contact_waits_and_its_own_records_keep_their_order() -> None:
    owner = Owner(fold=False)
    owner.gates[40] = asyncio.Event()
    worker = await start(owner, [rec(40, b"a"), rec(41, b"a"), rec(42, b"b"), rec(43, b"c")], concurrency=3)
    assert [o for o, _ in owner.started] == [40, 42, 43]  # 41 waits for its contact's 40
    assert owner.done == [42, 43]
    assert worker.finished == 40
    owner.gates[40].set()
    await settle()
    assert owner.done == [42, 43, 40, 41]
    assert worker.finished == 44
    await stop(worker)


async def test_concurrency_is_bounded() -> None:
    owner = Owner(fold=False)
    for offset in (50, 51, 52):
        owner.gates[offset] = asyncio.Event()
    worker = await start(owner, [rec(50, b"a"), rec(51, b"b"), rec(52, b"c"), rec(53, b"d")], concurrency=2)
    assert [o for o, _ in owner.started] == [50, 51]
    owner.gates[50].set()
    await settle()
    assert [o for o, _ in owner.started] == [50, 51, 52]
    for gate in owner.gates.values():
        gate.set()
    await settle()
    assert worker.finished == 54
    await stop(worker)


async def test_a_cancelled_handling_is_never_committed_past() -> None:
    owner = Owner(fold=False)
    owner.gates[61] = asyncio.Event()
    worker = await start(owner, [rec(60, b"a"), rec(61, b"b"), rec(62, b"c")], concurrency=3)
    assert worker.finished == 61
    await stop(worker)  # a rebalance cancels 61 mid-write
    assert worker.finished == 61


async def test_a_contacts_next_write_waits_out_the_interval_and_carries_everything_that_arrived() -> None:
    owner = Owner()
    now = [100.0]
    worker = _PartitionWorker(
        owner,  # type: ignore[arg-type]
        TopicPartition("tandem.commands", 0),
        concurrency=4,
        contact_interval_s=1.0,
        clock=lambda: now[0],
    )
    worker.arrived(rec(70, b"a"))
    await settle()
    for offset, key in ((71, b"a"), (72, b"b"), (73, b"a"), (74, b"a")):
        worker.arrived(rec(offset, key))
    await settle()
    assert owner.started == [(70, []), (72, [])]  # contact a was written a moment ago; b goes ahead
    assert worker.finished == 71
    now[0] += 0.5
    worker.poke()
    await settle()
    assert owner.started == [(70, []), (72, [])]
    now[0] += 0.5
    worker.poke()
    await settle()
    assert owner.started == [(70, []), (72, []), (71, [73, 74])]  # one write for the rest of the burst
    assert worker.finished == 75
    await stop(worker)
