"""SyncCommands for accessplanit on the real tandem.commands topic, applied by the writer process to the simulator."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata, RecordMetadata

from support.commands import sync_command
from support.kafka import connect
from support.stack import RunningStack, running_stack
from support.topics import wait_for_records
from tandem_devstack.stack import DEMO_ACCESSPLANIT_ADMIN_KEY, service_specs
from tandem_shared.contracts import (
    Stage,
    SyncCommand,
    System,
    TraceRecord,
    TraceStatus,
)
from tandem_shared.contracts.envelopes import command_envelope
from tandem_shared.contracts.topics import COMMANDS, TRACE
from tandem_shared.kafka import KafkaProducer, send_envelope
from tandem_shared.redis.client import connect_url
from tandem_shared.redis.idempotency import redis_keys

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    tmp: Path = tmp_path_factory.mktemp("ap-writer")
    with running_stack(kafka_bootstrap, redis_url, tmp, services=["accessplanit-sim", "writer"]) as running:
        yield running


@pytest.fixture
async def admin(stack: RunningStack) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {DEMO_ACCESSPLANIT_ADMIN_KEY}"}
    async with httpx.AsyncClient(base_url=f"{stack.url('accessplanit_sim')}/api/v2", headers=headers) as client:
        yield client


def upsert(instance_id: str, payload: dict[str, Any]) -> SyncCommand:
    return sync_command(
        instance_id,
        System.ACCESSPLANIT,
        payload,
        email=payload["Email"],
        name=uuid.uuid4().hex,
        execution_id=uuid.uuid4().hex,
        event_id=uuid.uuid4().hex,
    )


async def send(kafka: str, command: SyncCommand) -> RecordMetadata:
    """Published as the mapper does; returns where it landed (for the offset reset below)."""
    producer = KafkaProducer(connect(kafka))
    await producer.start()
    try:
        metadata: RecordMetadata = await (await send_envelope(producer, command_envelope(command)))
    finally:
        await producer.stop()
    return metadata


async def writer_records(stack: RunningStack, command: SyncCommand, count: int = 1) -> list[TraceRecord]:
    return await wait_for_records(
        stack.kafka,
        TRACE,
        TraceRecord,
        where=lambda r: r.execution_id == command.execution_id and r.stage is Stage.WRITER,
        until=lambda found: len(found) >= count,
    )


async def users(admin: httpx.AsyncClient, email: str) -> list[dict[str, Any]]:
    response = await admin.get("/User", params={"$filter": f"Email eq '{email}'"})
    response.raise_for_status()
    return response.json()["results"]


async def test_a_command_creates_one_user_in_the_default_account_and_the_next_one_updates_it(
    stack: RunningStack, admin: httpx.AsyncClient
) -> None:
    email = f"mc.{uuid.uuid4().hex[:8]}@example.com"
    create = upsert(stack.instance.id, {"Email": email, "Forenames": "Ada", "Surname": "Lovelace"})
    await send(stack.kafka, create)
    [created_trace] = await writer_records(stack, create)
    assert created_trace.status is TraceStatus.SUCCEEDED, created_trace.summary
    [user] = await users(admin, email)
    assert (user["Forenames"], user["Surname"], user["MainCompanyID"]) == ("Ada", "Lovelace", "1")
    assert user["CreatedByID"] == "900001"
    assert created_trace.summary == f"Created accessplanit user {user['ID']} ({email}) in account 1"

    update = upsert(stack.instance.id, {"Email": email, "Forenames": "Ada", "Surname": "King"})
    await send(stack.kafka, update)
    [updated_trace] = await writer_records(stack, update)
    assert updated_trace.summary == f"Updated accessplanit user {user['ID']} ({email}): Surname"
    [after] = await users(admin, email)
    assert (after["ID"], after["Surname"]) == (user["ID"], "King")


async def test_a_create_redelivered_after_a_crash_before_the_commit_does_not_duplicate(
    stack: RunningStack, admin: httpx.AsyncClient
) -> None:
    email = f"crash.{uuid.uuid4().hex[:8]}@example.com"
    create = upsert(stack.instance.id, {"Email": email, "Forenames": "Grace", "Surname": "Hopper"})
    landed = await send(stack.kafka, create)
    await writer_records(stack, create)
    assert len(await users(admin, email)) == 1

    # The writer dies having created the user but before it recorded the write as applied or committed its
    # offset: on restart Kafka hands the same command over again and the idempotency record is not there to
    # skip it. Reproduced by stopping the writer, forgetting the record, and moving the group's offset back.
    [writer] = [s for s in service_specs(stack.ports) if s.name == "writer"]
    stack.stack.stop("writer")
    applied_key, _, applied_at = redis_keys(create)
    redis = connect_url(stack.redis)
    try:
        assert await redis.delete(applied_key, applied_at) == 2
    finally:
        await redis.aclose()
    await rewind(stack.kafka, stack.stack.env["TANDEM_WRITER_GROUP_ID"], landed)
    stack.stack.start(writer)

    first, redelivered = await writer_records(stack, create, count=2)
    assert redelivered.status is TraceStatus.SUCCEEDED
    assert "already up to date" in redelivered.summary
    assert len(await users(admin, email)) == 1


async def rewind(kafka: str, group_id: str, landed: RecordMetadata) -> None:
    tp = TopicPartition(COMMANDS, landed.partition)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, group_id=group_id, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.commit({tp: OffsetAndMetadata(landed.offset, "")})
    finally:
        await consumer.stop()
