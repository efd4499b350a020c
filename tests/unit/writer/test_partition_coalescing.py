"""A partition's strategy: contacts side by side, each contact in order, folded records handled once, and offsets
reported finished only below the oldest record not yet done — driven through the public strategy protocol."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import TopicPartition

from tandem_shared.kafka.partitioned import InboundRecord, KeyedStrategy

PARTITION = TopicPartition("tandem.commands", 0)


def rec(offset: int, key: bytes) -> InboundRecord:
    return InboundRecord("tandem.commands", 0, offset, key, b"{}", {}, 0)


class Handling:
    """The handler and fold the strategy is given. Folds later records with the same key when `fold`; records whose
    offset is in `gates` are held until their gate opens."""

    def __init__(self, fold: bool = True) -> None:
        self.fold = fold
        self.started: list[tuple[int, list[int]]] = []
        self.done: list[int] = []
        self.gates: dict[int, asyncio.Event] = {}

    def same_contact(self, record: InboundRecord, waiting: Sequence[InboundRecord]) -> list[InboundRecord]:
        return [r for r in waiting if r.key == record.key] if self.fold else []

    async def handle(self, record: InboundRecord, absorbed: Sequence[InboundRecord]) -> None:
        self.started.append((record.offset, [r.offset for r in absorbed]))
        if record.offset in self.gates:
            await self.gates[record.offset].wait()
        self.done.append(record.offset)


async def settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


async def start(handling: Handling, records: list[InboundRecord], concurrency: int = 1) -> KeyedStrategy:
    strategy = KeyedStrategy(PARTITION, handling.handle, concurrency=concurrency, fold=handling.same_contact)
    for r in records:
        strategy.submit(r)
    await settle()
    return strategy


async def test_folded_records_are_handled_once_and_their_offsets_committed_in_order() -> None:
    handling = Handling()
    strategy = await start(handling, [rec(10, b"a"), rec(11, b"b"), rec(12, b"a"), rec(13, b"c")])
    assert handling.started == [(10, [12]), (11, []), (13, [])]
    assert strategy.poll() == 14
    await strategy.terminate()


async def test_a_folded_record_at_the_tail_is_committed_with_the_write_that_carried_it() -> None:
    handling = Handling()
    strategy = await start(handling, [rec(20, b"a"), rec(21, b"a"), rec(22, b"a")])
    assert handling.started == [(20, [21, 22])]
    assert strategy.poll() == 23
    await strategy.terminate()


async def test_nothing_is_committed_past_a_record_still_in_hand() -> None:
    handling = Handling()
    handling.gates[31] = asyncio.Event()
    strategy = await start(handling, [rec(30, b"a"), rec(31, b"b"), rec(32, b"a")])
    assert strategy.poll() == 31  # 30 done (and 32 folded into it), 31 still in hand
    handling.gates[31].set()
    await settle()
    assert strategy.poll() == 33
    await strategy.terminate()


async def test_other_contacts_go_ahead_while_one_contact_waits_and_its_own_records_keep_their_order() -> None:
    handling = Handling(fold=False)
    handling.gates[40] = asyncio.Event()
    strategy = await start(handling, [rec(40, b"a"), rec(41, b"a"), rec(42, b"b"), rec(43, b"c")], concurrency=3)
    assert [o for o, _ in handling.started] == [40, 42, 43]  # 41 waits for its contact's 40
    assert handling.done == [42, 43]
    assert strategy.poll() == 40
    handling.gates[40].set()
    await settle()
    assert handling.done == [42, 43, 40, 41]
    assert strategy.poll() == 44
    await strategy.terminate()


async def test_concurrency_is_bounded() -> None:
    handling = Handling(fold=False)
    for offset in (50, 51, 52):
        handling.gates[offset] = asyncio.Event()
    strategy = await start(handling, [rec(50, b"a"), rec(51, b"b"), rec(52, b"c"), rec(53, b"d")], concurrency=2)
    assert [o for o, _ in handling.started] == [50, 51]
    handling.gates[50].set()
    await settle()
    assert [o for o, _ in handling.started] == [50, 51, 52]
    for gate in handling.gates.values():
        gate.set()
    await settle()
    assert strategy.poll() == 54
    await strategy.terminate()


async def test_a_cancelled_handling_is_never_committed_past() -> None:
    handling = Handling(fold=False)
    handling.gates[61] = asyncio.Event()
    strategy = await start(handling, [rec(60, b"a"), rec(61, b"b"), rec(62, b"c")], concurrency=3)
    assert strategy.poll() == 61
    await strategy.terminate()  # a rebalance cancels 61 mid-write
    assert handling.done == [60, 62]
    assert strategy.poll() == 61


async def test_a_contacts_next_write_waits_out_the_interval_and_carries_everything_that_arrived() -> None:
    handling = Handling()
    now = [100.0]
    strategy = KeyedStrategy(
        PARTITION,
        handling.handle,
        concurrency=4,
        key_interval_s=1.0,
        fold=handling.same_contact,
        clock=lambda: now[0],
    )
    strategy.submit(rec(70, b"a"))
    await settle()
    for offset, key in ((71, b"a"), (72, b"b"), (73, b"a"), (74, b"a")):
        strategy.submit(rec(offset, key))
    await settle()
    assert handling.started == [(70, []), (72, [])]  # contact a was written a moment ago; b goes ahead
    assert strategy.poll() == 71
    now[0] += 0.5
    assert strategy.poll() == 71  # polling is where a strategy notices that time has passed
    await settle()
    assert handling.started == [(70, []), (72, [])]
    now[0] += 0.5
    strategy.poll()
    await settle()
    assert handling.started == [(70, []), (72, []), (71, [73, 74])]  # one write for the rest of the burst
    assert strategy.poll() == 75
    await strategy.terminate()
