"""Consumer groups on the real broker, as an operator sees them: committed offsets and membership."""

from __future__ import annotations

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient


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
