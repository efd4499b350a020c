"""`tandem_events_in_total` / `tandem_events_out_total` are counted by the Kafka kit itself, under the stage the
connection names and the topic: a record Kafka acknowledged counts out, one a subscriber or follower takes counts in."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from aiokafka import ConsumerRecord
from faststream.kafka import TestKafkaBroker

from tandem_shared.kafka import KafkaConnection, KafkaProducer
from tandem_shared.kafka.counting import received
from tandem_shared.metrics import EVENTS_IN, EVENTS_OUT

TOPIC = "test.counted"
# Never dialled: the producer's client is replaced, FastStream's broker runs in memory.
CONNECTION = KafkaConnection("127.0.0.1:1", "tandem-counting-test")


def value(metric: Any, **labels: str) -> float:
    return float(metric.labels(**labels)._value.get())


class AcknowledgingClient:
    """aiokafka's producer as KafkaProducer uses it: each send's future resolves as `acks` says."""

    def __init__(self, acks: list[bool]) -> None:
        self._acks = acks

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(self, topic: str, **_: Any) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._acks.pop(0):
            future.set_result(None)
        else:
            future.set_exception(RuntimeError("refused"))
        return future


async def test_a_record_counts_out_once_kafka_acknowledged_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(KafkaConnection, "producer", lambda self, **_: AcknowledgingClient([True, True, False]))
    before = value(EVENTS_OUT, service="counting-test", topic=TOPIC)
    producer = KafkaProducer(CONNECTION)
    await producer.start()
    headers: Mapping[str, str] = {}
    futures = [await producer.send(TOPIC, b"x", key=None, headers=headers) for _ in range(3)]
    await asyncio.gather(*futures, return_exceptions=True)
    await asyncio.sleep(0)  # the done callbacks run on the next turn of the loop
    assert value(EVENTS_OUT, service="counting-test", topic=TOPIC) - before == 2  # the refused one is not counted


async def test_a_faststream_subscriber_counts_each_record_of_a_batch_in() -> None:
    broker = CONNECTION.broker()
    handled: list[Any] = []

    @broker.subscriber(TOPIC, group_id="counting-test", batch=True)
    async def handle(batch: list[str]) -> None:
        handled.append(batch)

    before = value(EVENTS_IN, service="counting-test", topic=TOPIC)
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish_batch("a", "b", "c", topic=TOPIC)
    assert handled
    assert value(EVENTS_IN, service="counting-test", topic=TOPIC) - before == 3


def test_records_count_in_by_their_own_topic() -> None:
    other = f"{TOPIC}.other"
    before = (
        value(EVENTS_IN, service="counting-test", topic=TOPIC),
        value(EVENTS_IN, service="counting-test", topic=other),
    )
    records = [ConsumerRecord(t, 0, i, 0, 0, None, b"", None, 0, 0, []) for i, t in enumerate([TOPIC, other, TOPIC])]
    received("counting-test", records)
    after = (
        value(EVENTS_IN, service="counting-test", topic=TOPIC),
        value(EVENTS_IN, service="counting-test", topic=other),
    )
    assert (after[0] - before[0], after[1] - before[1]) == (2, 1)
