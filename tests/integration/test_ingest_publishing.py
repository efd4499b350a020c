"""ChangePublisher sends through the producer port the very records FastStream's publish sent."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from faststream.kafka import KafkaBroker

from support.kafka import connect
from support.mapper import accessplanit_change
from tandem_ingest.publishing import ChangePublisher, KafkaUnavailable
from tandem_shared.contracts import Headers, Stage, TraceRecord, TraceStatus, message_key, utcnow
from tandem_shared.contracts.topics import CHANGES, TRACE
from tandem_shared.kafka import KafkaProducer, caught_up, ensure_topics, partitions_of
from tandem_shared.privacy import minimise_event

pytestmark = pytest.mark.integration


@pytest.fixture
async def broker(kafka_bootstrap: str) -> AsyncIterator[KafkaBroker]:
    await ensure_topics(connect(kafka_bootstrap))
    broker = connect(kafka_bootstrap).broker("tandem-ingest-test")
    await broker.start()
    yield broker
    await broker.stop()


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[KafkaProducer]:
    producer = KafkaProducer(connect(kafka_bootstrap))
    await producer.start()
    yield producer
    await producer.stop()


async def records_since(bootstrap: str, topic: str, start: dict, execution_id: str) -> list[ConsumerRecord]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        end = await consumer.end_offsets(list(start))
        found: list[ConsumerRecord] = []
        while not await caught_up(consumer, end):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found.extend(r for r in records if (Headers.EXECUTION_ID, execution_id.encode()) in r.headers)
        return found
    finally:
        await consumer.stop()


async def end_offsets(bootstrap: str, topic: str) -> dict:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        return dict(await consumer.end_offsets(await partitions_of(connect(bootstrap), topic)))
    finally:
        await consumer.stop()


async def test_the_change_and_its_trace_are_the_records_faststream_sent(
    broker: KafkaBroker, producer: KafkaProducer, kafka_bootstrap: str
) -> None:
    event = accessplanit_change(f"pub-{uuid.uuid4().hex[:8]}", "4242", at=utcnow())
    own = {"x-tandem-test": "1"}
    changes_start = await end_offsets(kafka_bootstrap, CHANGES)
    traces_start = await end_offsets(kafka_bootstrap, TRACE)

    await ChangePublisher(producer, timeout_s=10).publish(event, stage=Stage.INGEST, notes=["a note"], headers=own)
    headers = {**own, Headers.INSTANCE_ID: event.instance_id, Headers.EXECUTION_ID: event.execution_id}
    headers[Headers.EVENT_ID] = event.event_id
    key = message_key(event.instance_id, event.identity.contact_key).encode()
    await broker.publish(event, topic=CHANGES, key=key, headers=headers)

    ours, faststreams = await records_since(kafka_bootstrap, CHANGES, changes_start, event.execution_id)
    assert ours.value == faststreams.value == event.model_dump_json().encode()
    assert ours.key == faststreams.key == key
    assert ours.partition == faststreams.partition
    assert [name for name, _ in ours.headers] == [name for name, _ in faststreams.headers]
    assert [h for h in ours.headers if h[0] != "correlation_id"] == [
        h for h in faststreams.headers if h[0] != "correlation_id"
    ]
    assert len(dict(ours.headers)["correlation_id"]) == len(dict(faststreams.headers)["correlation_id"]) == 36

    [trace] = await records_since(kafka_bootstrap, TRACE, traces_start, event.execution_id)
    record = TraceRecord.model_validate_json(trace.value)
    assert trace.key == event.execution_id.encode()
    assert trace.headers[:1] == (("content-type", b"application/json"),)
    assert dict(trace.headers)[Headers.INSTANCE_ID] == event.instance_id.encode()
    assert (record.stage, record.status, record.instance_id) == (Stage.INGEST, TraceStatus.SUCCEEDED, event.instance_id)
    assert [line.message for line in record.logs][0] == "a note"
    # No registry was given, so no instance says which fields are mapped: the trace keeps the identity only.
    assert record.output.data_out == minimise_event(event, None)


async def test_nothing_is_acknowledged_before_the_broker_is_connected(kafka_bootstrap: str) -> None:
    never_started = KafkaProducer(connect(kafka_bootstrap))
    event = accessplanit_change("pub-unconnected", "1", at=utcnow())
    with pytest.raises(KafkaUnavailable):
        await ChangePublisher(never_started, timeout_s=2).publish(event)
