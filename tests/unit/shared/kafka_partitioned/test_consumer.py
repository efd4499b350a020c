"""PartitionedConsumer on in-memory Kafka (tests/fakes/kafka.py): per-partition commits of exactly what is finished,
back-pressure by pausing, broker trouble outlived, rebalances and shutdown without a record lost or repeated."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Sequence

import pytest
from aiokafka import TopicPartition

from fakes.kafka import FakeBroker, FakeConsumer
from support.waiting import eventually
from tandem_shared.kafka.partitioned import (
    InboundRecord,
    KeyedStrategy,
    PartitionedConsumer,
    ProcessingStrategy,
    StrategyFactory,
)
from tandem_shared.kafka.partitioned import consumer as consumer_module
from tandem_shared.metrics import EVENTS_IN

TOPIC = "test.partitioned"
P0, P1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)
GROUP = "test-group"
SERVICE = "test-partitioned"


class Handler:
    """Remembers what it handled, per partition and in order; records named in `gates` wait for their gate."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.seen: dict[int, list[str]] = defaultdict(list)
        self.gates: dict[str, asyncio.Event] = {}

    async def __call__(self, record: InboundRecord, absorbed: Sequence[InboundRecord]) -> None:
        value = (record.value or b"").decode()
        self.started.append(value)
        if value in self.gates:
            await self.gates[value].wait()
        self.seen[record.partition].append(value)


def keyed(handler: Handler) -> StrategyFactory:
    def create(partition: TopicPartition, progress: Callable[[], None]) -> ProcessingStrategy:
        return KeyedStrategy(partition, handler, progress=progress)

    return create


@pytest.fixture
def broker() -> FakeBroker:
    broker = FakeBroker()
    broker.create_topic(TOPIC, 2)
    return broker


def produce(broker: FakeBroker, tp: TopicPartition, *values: str) -> None:
    for value in values:
        broker.produce(tp, value.encode())


async def started(
    broker: FakeBroker,
    handler: Handler,
    partitions: set[TopicPartition],
    *,
    max_buffered: int = 100,
    shutdown_grace_s: float = 35.0,
) -> tuple[PartitionedConsumer, FakeConsumer]:
    client = broker.consumer(GROUP)
    consumer = PartitionedConsumer(
        lambda: client,
        topics=[TOPIC],
        strategy=keyed(handler),
        service=SERVICE,
        max_buffered=max_buffered,
        shutdown_grace_s=shutdown_grace_s,
    )
    await consumer.start()
    assert client.started and client.topics == [TOPIC]
    await client.rebalance(partitions)
    return consumer, client


async def _true(value: bool) -> bool:
    return value


def committed(broker: FakeBroker) -> dict[TopicPartition, int]:
    return dict(broker.committed[GROUP])


async def test_each_partition_commits_exactly_what_it_has_finished(broker: FakeBroker) -> None:
    produce(broker, P0, "p0-0", "p0-1", "p0-2")
    produce(broker, P1, "p1-0", "p1-1", "p1-2", "p1-3")
    handler = Handler()
    handler.gates["p0-1"] = asyncio.Event()
    consumer, client = await started(broker, handler, {P0, P1})
    try:
        await eventually(lambda: _true(committed(broker) == {P0: 1, P1: 4}), timeout=5, interval=0.01)
        assert all(offsets[P0] <= 1 for offsets in client.commits if P0 in offsets), "never past p0-1"
        handler.gates["p0-1"].set()
        await eventually(lambda: _true(committed(broker) == {P0: 3, P1: 4}), timeout=5, interval=0.01)
    finally:
        await consumer.stop()
    assert handler.seen == {0: ["p0-0", "p0-1", "p0-2"], 1: ["p1-0", "p1-1", "p1-2", "p1-3"]}


async def test_the_records_it_takes_count_as_events_in_under_its_service_and_topic(broker: FakeBroker) -> None:
    counted = EVENTS_IN.labels(service=SERVICE, topic=TOPIC)
    before = counted._value.get()
    produce(broker, P0, "a", "b")
    produce(broker, P1, "c")
    handler = Handler()
    consumer, _ = await started(broker, handler, {P0, P1})
    try:
        await eventually(lambda: _true(committed(broker) == {P0: 2, P1: 1}), timeout=5, interval=0.01)
    finally:
        await consumer.stop()
    assert counted._value.get() - before == 3


async def test_a_full_partition_is_paused_while_the_others_go_on_and_resumed_once_half_is_taken(
    broker: FakeBroker,
) -> None:
    values = [f"p0-{i}" for i in range(10)]
    produce(broker, P0, *values)
    produce(broker, P1, "p1-0", "p1-1")
    handler = Handler()
    handler.gates["p0-0"] = asyncio.Event()
    consumer, client = await started(broker, handler, {P0, P1}, max_buffered=4)
    try:
        await eventually(lambda: _true(handler.seen[1] == ["p1-0", "p1-1"]), timeout=5, interval=0.01)
        assert client.paused() == {P0}
        assert client.resumes == []
        handler.gates["p0-0"].set()
        await eventually(lambda: _true(committed(broker).get(P0) == 10), timeout=5, interval=0.01)
    finally:
        await consumer.stop()
    assert client.pauses == [P0]
    assert client.resumes == [P0]
    assert handler.seen[0] == values


async def test_a_failed_commit_is_made_again_and_a_failed_poll_polled_again(
    broker: FakeBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumer_module, "POLL_FAILURE_PAUSE_S", 0.01)
    produce(broker, P0, "a", "b", "c")
    handler = Handler()
    client = broker.consumer(GROUP)
    client.fail_polls = 2
    client.fail_commits = 1
    consumer = PartitionedConsumer(lambda: client, topics=[TOPIC], strategy=keyed(handler), service=SERVICE)
    await consumer.start()
    try:
        await client.rebalance({P0})
        await eventually(lambda: _true(committed(broker) == {P0: 3}), timeout=5, interval=0.01)
        assert consumer.running
    finally:
        await consumer.stop()
    assert client.fail_polls == 0 and client.fail_commits == 0
    assert handler.seen[0] == ["a", "b", "c"]


async def test_stop_finishes_the_record_in_flight_commits_it_and_stops_the_client(broker: FakeBroker) -> None:
    produce(broker, P0, "slow", "next")
    handler = Handler()
    handler.gates["slow"] = asyncio.Event()
    consumer, client = await started(broker, handler, {P0}, shutdown_grace_s=10)
    await eventually(lambda: _true(handler.started == ["slow"]), timeout=5, interval=0.01)
    stopping = asyncio.create_task(consumer.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done(), "stop waits for the record in flight"
    handler.gates["slow"].set()
    await asyncio.wait_for(stopping, timeout=5)
    assert handler.seen[0] == ["slow"], "nothing new starts once stopping"
    assert committed(broker) == {P0: 1}
    assert client.stopped
    assert not consumer.running


async def test_stop_abandons_what_does_not_finish_within_the_grace_period(broker: FakeBroker) -> None:
    produce(broker, P0, "a", "stuck")
    handler = Handler()
    handler.gates["stuck"] = asyncio.Event()
    consumer, client = await started(broker, handler, {P0}, shutdown_grace_s=0.1)
    await eventually(lambda: _true(handler.seen[0] == ["a"]), timeout=5, interval=0.01)
    began = time.monotonic()
    await consumer.stop()
    assert time.monotonic() - began < 2
    assert committed(broker) == {P0: 1}, "never past the abandoned record"
    assert client.stopped


async def test_records_fetched_during_a_rebalance_are_dropped_and_read_again_from_the_committed_offset(
    broker: FakeBroker,
) -> None:
    produce(broker, P0, "0", "1", "2")
    handler = Handler()
    handler.gates["1"] = asyncio.Event()
    consumer, client = await started(broker, handler, {P0}, shutdown_grace_s=10)
    try:
        await eventually(lambda: _true(handler.seen[0] == ["0"]), timeout=5, interval=0.01)
        # The group rebalances (the partition comes back to this member) while "1" is in flight; records fetched
        # meanwhile must not start on a fresh strategy behind the retiring one's back.
        rebalancing = asyncio.create_task(client.rebalance({P0}))
        await asyncio.sleep(0.02)
        produce(broker, P0, "3", "4")
        await asyncio.sleep(0.05)
        assert handler.seen[0] == ["0"]
        handler.gates["1"].set()
        await asyncio.wait_for(rebalancing, timeout=5)
        assert committed(broker) == {P0: 2}  # "2" was only buffered when the partition was revoked
        await eventually(lambda: _true(committed(broker) == {P0: 5}), timeout=5, interval=0.01)
    finally:
        await consumer.stop()
    assert handler.seen[0] == ["0", "1", "2", "3", "4"]


async def test_a_rebalance_hands_a_partition_over_without_losing_or_repeating_a_record(broker: FakeBroker) -> None:
    produce(broker, P0, *(f"p0-{i}" for i in range(5)))
    produce(broker, P1, *(f"p1-{i}" for i in range(5)))
    first_handler, second_handler = Handler(), Handler()
    first_handler.gates["p1-2"] = asyncio.Event()
    first, first_client = await started(broker, first_handler, {P0, P1}, shutdown_grace_s=0.1)
    second, second_client = await started(broker, second_handler, set())
    try:
        await eventually(lambda: _true(first_handler.seen[1] == ["p1-0", "p1-1"]), timeout=5, interval=0.01)
        await first_client.rebalance({P0})  # p1-2 does not finish within the grace period: abandoned
        await second_client.rebalance({P1})
        await eventually(lambda: _true(committed(broker) == {P0: 5, P1: 5}), timeout=5, interval=0.01)
    finally:
        await second.stop()
        await first.stop()
    assert first_handler.seen == {0: [f"p0-{i}" for i in range(5)], 1: ["p1-0", "p1-1"]}
    assert second_handler.seen == {1: ["p1-2", "p1-3", "p1-4"]}
