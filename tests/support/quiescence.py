"""Quiescence, measured: every consumer group of a test stack has consumed everything (lag zero on the changes, the
commands and every retry tier, so nothing waits on a retry tier), nothing is held for its instance (a paused
instance's changes, or a resumed one's still being released), no accessplanit delivery waits for the catch-up read
(deferred beyond the instance's re-read allowance, so its edit is no event yet), and nothing new was traced between
two probes (no webhook reached ingest, no decision or write was made)."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from support.groups import committed_offsets
from support.kafka import connect
from support.stack import RunningStack
from tandem_shared.contracts.topics import CHANGES, COMMANDS, COMMANDS_RETRY, TRACE
from tandem_shared.kafka import partitions_of
from tandem_shared.redis.client import connect_url
from tandem_shared.redis.held import RedisHeldStore
from tandem_shared.redis.keys import poller_deferred_key


async def _ends(bootstrap: str, topics: list[str]) -> dict[TopicPartition, int]:
    partitions = [tp for topic in topics for tp in await partitions_of(connect(bootstrap), topic)]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        return dict(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def lag(bootstrap: str, group_id: str, topics: list[str]) -> int:
    ends = await _ends(bootstrap, topics)
    committed = await committed_offsets(bootstrap, group_id)
    return sum(end - committed.get(tp, 0) for tp, end in ends.items() if end > 0)


async def held_backlog(stack: RunningStack) -> int:
    redis = connect_url(stack.redis)
    try:
        return await RedisHeldStore(redis).backlog(stack.instance.id)
    finally:
        await redis.aclose()


async def deferred_users(stack: RunningStack) -> int:
    """accessplanit users whose delivery waits for the catch-up poll: their edits are not events yet."""
    redis = connect_url(stack.redis)
    try:
        return int(await redis.zcard(poller_deferred_key(stack.instance.id)))
    finally:
        await redis.aclose()


async def wait_quiescent(
    stack: RunningStack, *, timeout: float = 120.0, interval: float = 1.0, paused: bool = False
) -> None:
    """Returns once two probes `interval` apart both saw zero lag and nothing held, and the trace topic did not grow
    between them. `paused`: the instance is paused, so what it holds stays held (and is not waited for)."""
    mapper_group = stack.stack.env["TANDEM_MAPPER_GROUP_ID"]
    writer_group = stack.stack.env["TANDEM_WRITER_GROUP_ID"]
    deadline = time.monotonic() + timeout
    previous: dict[TopicPartition, int] | None = None
    while time.monotonic() < deadline:
        idle = (
            await lag(stack.kafka, mapper_group, [CHANGES]) == 0
            and await lag(stack.kafka, writer_group, [COMMANDS, *COMMANDS_RETRY]) == 0
            and (paused or await held_backlog(stack) == 0)
            and await deferred_users(stack) == 0
        )
        traced = await _ends(stack.kafka, [TRACE])
        if idle and traced == previous:
            return
        previous = traced if idle else None
        await asyncio.sleep(interval)
    raise AssertionError(f"the stack did not become quiescent within {timeout:.0f}s")
