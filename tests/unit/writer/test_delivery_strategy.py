"""The writer's strategy per partition: the command topic writes several contacts at once, folds a contact's queued
commands and paces each contact; a retry tier takes one record at a time, each once due (orphans at once)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta

from aiokafka import TopicPartition

from support.waiting import eventually
from tandem_shared.contracts import Headers, utcnow
from tandem_shared.contracts.topics import COMMANDS, COMMANDS_RETRY
from tandem_shared.kafka.partitioned import InboundRecord, ProcessingStrategy
from tandem_writer.domain.retry import epoch_ms
from tandem_writer.strategy import delivery_strategy

MAIN = TopicPartition(COMMANDS, 0)
RETRY = TopicPartition(COMMANDS_RETRY[0], 0)


class StandIn:
    """Delivery as the strategy sees it: remembers what it handled, folds a contact's queued records when `fold`,
    and knows which instances are gone."""

    def __init__(self, *, fold: bool = True, orphans: Sequence[str] = ()) -> None:
        self.fold = fold
        self.orphans = set(orphans)
        self.started: list[tuple[int, list[int]]] = []
        self.gates: dict[int, asyncio.Event] = {}

    async def handle(self, record: InboundRecord, absorbed: Sequence[InboundRecord] = ()) -> None:
        self.started.append((record.offset, [r.offset for r in absorbed]))
        if record.offset in self.gates:
            await self.gates[record.offset].wait()

    def absorbable(self, head: InboundRecord, behind: Sequence[InboundRecord]) -> list[InboundRecord]:
        return [r for r in behind if r.key == head.key] if self.fold else []

    def is_orphan(self, record: InboundRecord) -> bool:
        return record.headers.get(Headers.INSTANCE_ID) in self.orphans


def rec(tp: TopicPartition, offset: int, key: bytes, **headers: str) -> InboundRecord:
    return InboundRecord(tp.topic, tp.partition, offset, key, b"{}", headers, 0)


def strategy(delivery: StandIn, tp: TopicPartition, contact_interval_s: float = 0.0) -> ProcessingStrategy:
    create = delivery_strategy(delivery, concurrency=2, contact_interval_s=contact_interval_s)
    return create(tp, lambda: None)


async def settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


async def _true(value: bool) -> bool:
    return value


async def test_the_command_topic_writes_several_contacts_at_once_and_folds_a_contacts_queued_commands() -> None:
    delivery = StandIn()
    delivery.gates = {0: asyncio.Event(), 1: asyncio.Event()}
    s = strategy(delivery, MAIN)
    for offset, key in ((0, b"a"), (1, b"b"), (2, b"c"), (3, b"a")):
        s.submit(rec(MAIN, offset, key))
    await settle()
    assert delivery.started == [(0, [3]), (1, [])]  # two at once: c waits for a free slot
    delivery.gates[0].set()
    await settle()
    assert delivery.started == [(0, [3]), (1, []), (2, [])]
    delivery.gates[1].set()
    await settle()
    assert s.poll() == 4
    await s.terminate()


async def test_a_retry_tier_takes_one_record_at_a_time() -> None:
    delivery = StandIn()
    delivery.gates = {0: asyncio.Event()}
    s = strategy(delivery, RETRY)
    for offset, key in ((0, b"a"), (1, b"b")):
        s.submit(rec(RETRY, offset, key))
    await settle()
    assert delivery.started == [(0, [])]
    delivery.gates[0].set()
    await settle()
    assert delivery.started == [(0, []), (1, [])]
    await s.terminate()


async def test_a_contacts_next_write_is_paced_on_the_command_topic_only() -> None:
    cases: list[tuple[TopicPartition, list[tuple[int, list[int]]]]] = [(MAIN, [(0, [])]), (RETRY, [(0, []), (1, [])])]
    for tp, expected in cases:
        delivery = StandIn(fold=False)
        s = strategy(delivery, tp, contact_interval_s=60.0)
        s.submit(rec(tp, 0, b"a"))
        await settle()
        s.submit(rec(tp, 1, b"a"))
        await settle()
        assert delivery.started == expected, tp.topic
        await s.terminate()


async def test_a_retry_waits_until_its_not_before() -> None:
    delivery = StandIn()
    due = utcnow() + timedelta(seconds=1)
    s = strategy(delivery, RETRY)
    s.submit(rec(RETRY, 0, b"a", **{Headers.NOT_BEFORE: str(epoch_ms(due)), Headers.INSTANCE_ID: "demo"}))
    await settle()
    assert delivery.started == []
    await eventually(lambda: _true(delivery.started == [(0, [])]), timeout=5, interval=0.01)
    assert utcnow() >= due - timedelta(milliseconds=1)  # x-not-before is whole milliseconds
    await s.terminate()


async def test_a_removed_instances_retry_is_not_held_until_due() -> None:
    delivery = StandIn(orphans=["gone"])
    in_an_hour = str(epoch_ms(utcnow() + timedelta(hours=1)))
    s = strategy(delivery, RETRY)
    s.submit(rec(RETRY, 0, b"a", **{Headers.NOT_BEFORE: in_an_hour, Headers.INSTANCE_ID: "gone"}))
    s.submit(rec(RETRY, 1, b"b", **{Headers.NOT_BEFORE: in_an_hour, Headers.INSTANCE_ID: "demo"}))
    await settle()
    assert delivery.started == [(0, [])]
    assert s.poll() == 1
    await s.terminate()
