"""Topics: explicit creation (never broker auto-create), partitions from the broker's metadata, read positions."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import NewTopic
from aiokafka.errors import TopicAlreadyExistsError, TopicAuthorizationFailedError

from tandem_shared.contracts.topics import TOPICS, TopicSpec
from tandem_shared.kafka.connection import KafkaConnection


async def ensure_topics(connection: KafkaConnection, specs: Iterable[TopicSpec] = TOPICS) -> list[str]:
    """Create the topics that do not exist yet; returns the names created."""
    admin = connection.admin("tandem-topics")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        created: list[str] = []
        for spec in missing:
            try:
                await admin.create_topics([NewTopic(spec.name, spec.partitions, 1, topic_configs=dict(spec.config))])
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        await admin.close()


async def partitions_of(connection: KafkaConnection, topic: str, *, settle_s: float = 10.0) -> list[TopicPartition]:
    """The topic's partitions, from the broker's metadata (a consumer only learns them once subscribed).

    A topic created a moment ago can be missing from the metadata for a little while, so an unknown topic is asked
    for again until `settle_s` has passed before it counts as missing.
    """
    admin = connection.admin("tandem-metadata")
    await admin.start()
    try:
        deadline = asyncio.get_running_loop().time() + settle_s
        while True:
            described = await admin.describe_topics([topic])
            if described and not described[0].get("error_code") and described[0]["partitions"]:
                break
            if described and described[0].get("error_code") == TopicAuthorizationFailedError.errno:
                # Not "does not exist": on a secured broker, a topic outside the user's ACLs looks missing.
                raise LookupError(f"topic {topic}: this client's Kafka user may not describe it (its ACLs)")
            if asyncio.get_running_loop().time() >= deadline:
                raise LookupError(f"topic {topic} does not exist; create the topics first")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
    return [
        TopicPartition(topic, p["partition"]) for p in sorted(described[0]["partitions"], key=lambda p: p["partition"])
    ]


async def caught_up(consumer: AIOKafkaConsumer, end_offsets: dict[TopicPartition, int]) -> bool:
    """True once the consumer's position has reached the given end offset on every partition."""
    for tp, end in end_offsets.items():
        if await consumer.position(tp) < end:
            return False
    return True
