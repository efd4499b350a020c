"""The writer's side of the contract: once a write is applied, what the target now holds is recorded for the
mapper (and nothing is recorded for a write that failed)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from fakes.producer import InMemoryProducer
from support.commands import sync_command
from support.state import side
from tandem_shared.contracts import (
    ErrorInfo,
    InstanceConfig,
    SyncCommand,
    System,
)
from tandem_shared.contracts.topics import COMMANDS
from tandem_shared.instances import StaticInstanceRegistry, demo_instance
from tandem_shared.kafka.partitioned import InboundRecord
from tandem_shared.redis.idempotency import RedisIdempotencyStore
from tandem_shared.redis.state import RedisStateStore
from tandem_shared.sync.rules import content_fingerprint, field_digest
from tandem_writer.delivery import Delivery
from tandem_writer.domain.decisions import Disposition
from tandem_writer.domain.outcome import WriteOutcome
from tandem_writer.domain.retry import RetryPolicy

pytestmark = pytest.mark.integration


class Target:
    system = System.MAILCHIMP

    def __init__(self, outcome: WriteOutcome) -> None:
        self.outcome = outcome

    async def write(self, command: SyncCommand, instance: InstanceConfig) -> WriteOutcome:
        return self.outcome

    async def close(self) -> None:
        return None


def command(instance_id: str, email: str) -> SyncCommand:
    payload = {"email_address": email, "status_if_new": "subscribed", "merge_fields": {"FNAME": "Ada"}}
    fp = content_fingerprint(System.MAILCHIMP, payload)
    return sync_command(
        instance_id, System.MAILCHIMP, payload, email=email, user_id="7", execution_id="x", event_id="e", fp=fp
    )


@pytest.fixture
async def state(redis_url: str) -> AsyncIterator[RedisStateStore]:
    store = RedisStateStore.from_url(redis_url)
    yield store
    await store.close()


async def deliver(redis_url: str, state: RedisStateStore, cmd: SyncCommand, outcome: WriteOutcome) -> Disposition:
    instance = demo_instance().model_copy(update={"id": cmd.instance_id})
    store = RedisIdempotencyStore.from_url(redis_url)
    try:
        delivery = Delivery(
            registry=StaticInstanceRegistry([instance]),
            targets={System.MAILCHIMP: Target(outcome)},
            store=store,
            # Kafka in memory: retry tiers and the dead-letter topic are not what this test is about.
            producer=InMemoryProducer(),
            policy=RetryPolicy.from_delays([1]),
            state=state,
        )
        value = cmd.model_dump_json().encode()
        return await delivery.handle(InboundRecord(COMMANDS, 0, 1, None, value, {}, 0))
    finally:
        await store.close()


async def test_an_applied_write_is_recorded_as_what_the_target_holds(redis_url: str, state: RedisStateStore) -> None:
    cmd = command(f"w-{uuid.uuid4().hex[:8]}", "ada@example.com")
    assert await deliver(redis_url, state, cmd, WriteOutcome(True, "ok")) is Disposition.APPLIED
    held = await side(state, cmd.instance_id, System.MAILCHIMP, "ada@example.com")
    assert held is not None
    assert held.fields["FNAME"].digest == field_digest("Ada")
    assert held.fields["FNAME"].origin == "written"
    assert held.last_origin == "written"


async def test_a_failed_write_records_nothing(redis_url: str, state: RedisStateStore) -> None:
    cmd = command(f"w-{uuid.uuid4().hex[:8]}", "ada@example.com")
    error = ErrorInfo(error_class="InvalidResource", message="Invalid Resource", permanent=True)
    assert (
        await deliver(redis_url, state, cmd, WriteOutcome(False, "refused", error=error)) is Disposition.DEAD_LETTERED
    )
    assert await side(state, cmd.instance_id, System.MAILCHIMP, "ada@example.com") is None
