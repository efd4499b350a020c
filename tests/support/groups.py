"""Consumer groups on the real broker, as an operator sees them: committed offsets and membership."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from support.kafka import connect
from tandem_shared.kafka import partitions_of


async def committed_offsets(bootstrap: str, group_id: str) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="tandem-test-groups")
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group_id)
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


async def group_state(bootstrap: str, group_id: str) -> tuple[str, int]:
    """(state, number of members), e.g. ("Stable", 1) or ("Empty", 0) once every member has left."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="tandem-test-groups")
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([group_id])
    finally:
        await admin.close()
    _error, _group, state, _protocol_type, _protocol, members, *_ = response.groups[0]
    return str(state), len(members)


async def start_at_end(bootstrap: str, group_id: str, topics: list[str]) -> None:
    """Commits the group's position at the topics' current end, so it consumes only records written from now on."""
    partitions = [tp for topic in topics for tp in await partitions_of(connect(bootstrap), topic)]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        end = await consumer.end_offsets(partitions)
        await consumer.commit(end)
    finally:
        await consumer.stop()
