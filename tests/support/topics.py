"""Reading Tandem's topics on the real broker, the way a dashboard or an operator would."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

from aiokafka import AIOKafkaConsumer
from pydantic import BaseModel

from support.kafka import connect
from tandem_shared.kafka import caught_up, partitions_of

M = TypeVar("M", bound=BaseModel)


async def read_all(bootstrap: str, topic: str, model: type[M], *, where: Callable[[M], bool]) -> list[M]:
    """Every record on the topic right now (from the beginning, no consumer group) that matches `where`."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = await partitions_of(connect(bootstrap), topic)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        found: list[M] = []
        while not await caught_up(consumer, end):
            batch = await consumer.getmany(*partitions, timeout_ms=500)
            for records in batch.values():
                for record in records:
                    item = model.model_validate_json(record.value)
                    if where(item):
                        found.append(item)
        return found
    finally:
        await consumer.stop()


async def wait_for_records(
    bootstrap: str,
    topic: str,
    model: type[M],
    *,
    where: Callable[[M], bool],
    until: Callable[[list[M]], bool],
    timeout: float = 30.0,
) -> list[M]:
    deadline = time.monotonic() + timeout
    found: list[M] = []
    while time.monotonic() < deadline:
        found = await read_all(bootstrap, topic, model, where=where)
        if until(found):
            return found
        await asyncio.sleep(0.5)
    raise AssertionError(f"{topic}: condition not met within {timeout:.0f}s; {len(found)} matching records: {found!r}")
