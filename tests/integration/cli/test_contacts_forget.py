"""`tandem contacts forget` publishes an erasure request, keyed by the contact's keyed hash, not its address."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer

from support.kafka import connect
from tandem_cli.common import EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE
from tandem_cli.main import main
from tandem_shared.contact_hash import contact_hash
from tandem_shared.contracts import ErasureRequest
from tandem_shared.contracts.topics import ERASURE
from tandem_shared.kafka import caught_up, ensure_topics, partitions_of

pytestmark = pytest.mark.integration


async def erasure_records(bootstrap: str, start: dict) -> list[tuple[bytes, ErasureRequest]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        end = await consumer.end_offsets(list(start))
        found = []
        while not await caught_up(consumer, end):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found.extend((r.key, ErasureRequest.model_validate_json(r.value)) for r in records)
        return found
    finally:
        await consumer.stop()


async def end_offsets(bootstrap: str) -> dict:
    await ensure_topics(connect(bootstrap))
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        return dict(await consumer.end_offsets(await partitions_of(connect(bootstrap), ERASURE)))
    finally:
        await consumer.stop()


def test_forget_publishes_one_erasure_request(kafka_bootstrap: str, capsys: pytest.CaptureFixture[str]) -> None:
    start = asyncio.run(end_offsets(kafka_bootstrap))

    args = ["contacts", "forget", " Ada@Example.com", "--instance", "demo", "--bootstrap-servers", kafka_bootstrap]
    code = main(args)

    assert code == EXIT_OK
    [(key, request)] = asyncio.run(erasure_records(kafka_bootstrap, start))
    assert key == contact_hash("ada@example.com").encode()
    assert (request.address, request.instance_id) == ("ada@example.com", "demo")
    assert request.request_id in capsys.readouterr().out


def test_forget_refuses_what_is_not_an_address_and_an_unreachable_broker() -> None:
    assert main(["contacts", "forget", "nobody", "--bootstrap-servers", "127.0.0.1:1"]) == EXIT_USAGE
    unreachable = ["contacts", "forget", "a@example.com", "--bootstrap-servers", "127.0.0.1:1", "--timeout", "3"]
    assert main(unreachable) == EXIT_UNAVAILABLE
