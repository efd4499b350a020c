"""The writer's consumer on the real broker: per-partition order and commits, due times, retries, shutdown."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from support.groups import committed_offsets, group_state
from support.kafka import connect
from support.waiting import eventually
from tandem_shared.contracts import Headers, TopicSpec
from tandem_shared.kafka import ensure_topics
from tandem_shared.kafka.partitioned import (
    InboundRecord,
    KeyedStrategy,
    PartitionedConsumer,
    ProcessingStrategy,
    consumer_options,
)
from tandem_writer.domain.retry import not_before

pytestmark = pytest.mark.integration


@pytest.fixture
async def topic(kafka_bootstrap: str) -> str:
    name = f"test.delivery.{uuid.uuid4().hex[:8]}"
    await ensure_topics(connect(kafka_bootstrap), [TopicSpec(name, 2)])
    return name


@pytest.fixture
def group_id() -> str:
    return f"test-delivery-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await p.start()
    yield p
    await p.stop()


async def produce(
    producer: AIOKafkaProducer, topic: str, partition: int, values: list[str], not_before_ms: int | None = None
) -> None:
    headers = [(Headers.NOT_BEFORE, str(not_before_ms).encode())] if not_before_ms else []
    for value in values:
        await producer.send_and_wait(topic, value.encode(), partition=partition, headers=headers)


class Recorder:
    """The handler: remembers what it processed, per partition, in order."""

    def __init__(self, before: Callable[[InboundRecord], Awaitable[None]] | None = None) -> None:
        self.seen: dict[int, list[str]] = defaultdict(list)
        self.calls: dict[str, int] = defaultdict(int)
        self._before = before

    async def __call__(self, record: InboundRecord, absorbed: Sequence[InboundRecord] = ()) -> None:
        value = (record.value or b"").decode()
        self.calls[value] += 1
        if self._before is not None:
            await self._before(record)
        self.seen[record.partition].append(value)


def consumer(
    bootstrap: str,
    group_id: str,
    topic: str,
    handler: Recorder,
    *,
    max_buffered: int = 100,
    shutdown_grace_s: float = 35.0,
    session_timeout_ms: int = 10_000,
) -> PartitionedConsumer:
    def one_at_a_time(partition: TopicPartition, progress: Callable[[], None]) -> ProcessingStrategy:
        return KeyedStrategy(partition, handler, progress=progress, due=lambda r: not_before(r.headers))

    return PartitionedConsumer(
        lambda: AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            client_id="test-delivery",
            **consumer_options(group_id=group_id, session_timeout_ms=session_timeout_ms),
        ),
        topics=[topic],
        strategy=one_at_a_time,
        service="test-delivery",
        max_buffered=max_buffered,
        shutdown_grace_s=shutdown_grace_s,
    )


async def test_a_record_not_yet_due_holds_back_only_its_own_partition(
    kafka_bootstrap: str, topic: str, group_id: str, producer: AIOKafkaProducer
) -> None:
    in_an_hour = int((time.time() + 3600) * 1000)
    await produce(producer, topic, 0, ["later-0", "later-1", "later-2", "later-3"], not_before_ms=in_an_hour)
    await produce(producer, topic, 1, ["now-0", "now-1", "now-2"])
    handler = Recorder()
    c = consumer(kafka_bootstrap, group_id, topic, handler, max_buffered=2)
    await c.start()
    try:
        await eventually(lambda: _async(len(handler.seen[1]) == 3), timeout=30)
        # The waiting partition is paused once its buffer is full instead of being fetched without end.
        await eventually(lambda: _async(TopicPartition(topic, 0) in c.consumer.paused()), timeout=30)
        committed = await eventually(lambda: _nonempty(committed_offsets(kafka_bootstrap, group_id)), timeout=30)
    finally:
        await c.stop()
    assert handler.seen[1] == ["now-0", "now-1", "now-2"]
    assert handler.seen[0] == []
    assert committed == {TopicPartition(topic, 1): 3}
    assert TopicPartition(topic, 0) not in await committed_offsets(kafka_bootstrap, group_id)


async def test_each_partition_commits_exactly_what_it_has_finished(
    kafka_bootstrap: str, topic: str, group_id: str, producer: AIOKafkaProducer
) -> None:
    release = asyncio.Event()

    async def hold_p0_1(record: InboundRecord) -> None:
        if record.value == b"p0-1":
            await release.wait()

    await produce(producer, topic, 0, ["p0-0", "p0-1", "p0-2"])
    await produce(producer, topic, 1, ["p1-0", "p1-1", "p1-2", "p1-3"])
    handler = Recorder(hold_p0_1)
    c = consumer(kafka_bootstrap, group_id, topic, handler)
    await c.start()
    try:

        async def p1_done_p0_held() -> dict[TopicPartition, int] | None:
            offsets = await committed_offsets(kafka_bootstrap, group_id)
            return offsets if offsets.get(TopicPartition(topic, 1)) == 4 else None

        while_held = await eventually(p1_done_p0_held, timeout=30)
        release.set()

        async def all_done() -> bool:
            offsets = await committed_offsets(kafka_bootstrap, group_id)
            return offsets.get(TopicPartition(topic, 0)) == 3

        await eventually(all_done, timeout=30)
    finally:
        release.set()
        await c.stop()
    assert while_held[TopicPartition(topic, 0)] == 1, "never past the record still being processed"
    assert handler.seen == {0: ["p0-0", "p0-1", "p0-2"], 1: ["p1-0", "p1-1", "p1-2", "p1-3"]}


async def test_a_failing_handler_retries_the_same_record_and_never_skips_it(
    kafka_bootstrap: str, topic: str, group_id: str, producer: AIOKafkaProducer
) -> None:
    failures = {"b": 2}

    async def flaky(record: InboundRecord) -> None:
        value = (record.value or b"").decode()
        if failures.get(value, 0) > 0:
            failures[value] -= 1
            raise ConnectionError("Redis is away")

    await produce(producer, topic, 0, ["a", "b", "c"])
    handler = Recorder(flaky)
    c = consumer(kafka_bootstrap, group_id, topic, handler)
    await c.start()
    try:
        await eventually(lambda: _async(len(handler.seen[0]) == 3), timeout=30)
    finally:
        await c.stop()
    assert handler.seen[0] == ["a", "b", "c"]
    assert handler.calls["b"] == 3
    assert (await committed_offsets(kafka_bootstrap, group_id))[TopicPartition(topic, 0)] == 3


async def test_stop_finishes_the_record_in_flight_commits_it_and_leaves_the_group(
    kafka_bootstrap: str, topic: str, group_id: str, producer: AIOKafkaProducer
) -> None:
    started = asyncio.Event()

    async def slow(record: InboundRecord) -> None:
        started.set()
        await asyncio.sleep(1.0)

    await produce(producer, topic, 0, ["slow"])
    handler = Recorder(slow)
    c = consumer(kafka_bootstrap, group_id, topic, handler, shutdown_grace_s=10.0)
    await c.start()
    await asyncio.wait_for(started.wait(), timeout=30)
    assert handler.seen[0] == []
    await c.stop()
    assert handler.seen[0] == ["slow"]
    assert (await committed_offsets(kafka_bootstrap, group_id))[TopicPartition(topic, 0)] == 1
    assert await group_state(kafka_bootstrap, group_id) == ("Empty", 0)


async def _async(value: bool) -> bool:
    return value


async def _nonempty(offsets: Awaitable[dict[TopicPartition, int]]) -> dict[TopicPartition, int] | None:
    found = await offsets
    return found or None


async def test_a_rebalance_hands_partitions_over_without_losing_or_repeating_a_record(
    kafka_bootstrap: str, topic: str, group_id: str, producer: AIOKafkaProducer
) -> None:
    produced = {p: [f"p{p}-{i}" for i in range(20)] for p in (0, 1)}
    for partition, values in produced.items():
        await produce(producer, topic, partition, values)
    processed: list[tuple[int, str]] = []

    async def slow(record: InboundRecord) -> None:
        await asyncio.sleep(0.3)
        processed.append((record.partition, (record.value or b"").decode()))

    handlers = Recorder(slow), Recorder(slow)
    first, second = (consumer(kafka_bootstrap, group_id, topic, h, session_timeout_ms=6000) for h in handlers)
    await first.start()
    try:
        await eventually(lambda: _async(len(processed) >= 4), timeout=30)
        await second.start()  # the group rebalances while the first consumer is in the middle of both partitions
        await eventually(lambda: _async(len(processed) >= 40), timeout=60)
    finally:
        await second.stop()
        await first.stop()
    assert all(sum(len(v) for v in h.seen.values()) > 0 for h in handlers), "both consumers took part"
    for partition, values in produced.items():
        assert [v for p, v in processed if p == partition] == values
