"""`tandem instances delete` on the real broker and Redis, with the writer process running: the registry drops the
instance, its Redis keys go (another instance's stay), a command still on its way is dropped with a trace saying
so, and the same id applied again starts clean."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from redis.asyncio import Redis

from support.commands import sync_command
from support.kafka import connect
from support.stack import RunningStack, running_stack
from support.topics import wait_for_records
from support.waiting import eventually
from tandem_cli.common import EXIT_NOT_FOUND, EXIT_OK
from tandem_cli.main import main
from tandem_ingest.dedupe import RedisEventClaims
from tandem_ingest.domain.cursor import Cursor, Position
from tandem_ingest.poll_state import PollerLocks, RedisCursorStore
from tandem_shared.contracts import Stage, SyncCommand, System, TraceRecord, TraceStatus, utcnow
from tandem_shared.contracts.envelopes import command_envelope
from tandem_shared.contracts.topics import TRACE
from tandem_shared.instance_store import TopicInstanceRegistry, delete_instance, put_instance, remove_instance
from tandem_shared.instances import demo_instance
from tandem_shared.kafka import KafkaProducer, send_envelope
from tandem_shared.redis.client import connect_url
from tandem_shared.redis.keys import idempotency_keys, instance_key_patterns, state_key
from tandem_shared.redis.purge import purge_instance
from tandem_shared.redis.state import RedisStateStore

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    tmp: Path = tmp_path_factory.mktemp("delete-instance")
    with running_stack(kafka_bootstrap, redis_url, tmp, services=["accessplanit-sim", "writer"]) as running:
        yield running


@pytest.fixture
async def redis(stack: RunningStack) -> AsyncIterator[Redis]:
    client = connect_url(stack.redis)
    yield client
    await client.aclose()


@pytest.fixture
async def registry(stack: RunningStack) -> AsyncIterator[TopicInstanceRegistry]:
    followed = TopicInstanceRegistry(connect(stack.kafka))
    await followed.start()
    yield followed
    await followed.stop()


def upsert(instance_id: str, email: str, name: str = "Ada") -> SyncCommand:
    execution = uuid.uuid4().hex
    payload = {"Email": email, "Forenames": name, "Surname": "Lovelace"}
    return sync_command(
        instance_id, System.ACCESSPLANIT, payload, email=email, name=execution, execution_id=execution, event_id=name
    )


async def written(stack: RunningStack, command: SyncCommand) -> TraceRecord:
    """Publishes the command as the mapper does; the writer's trace record of it."""
    producer = KafkaProducer(connect(stack.kafka))
    await producer.start()
    try:
        await (await send_envelope(producer, command_envelope(command)))
    finally:
        await producer.stop()
    [record] = await wait_for_records(
        stack.kafka,
        TRACE,
        TraceRecord,
        where=lambda r: r.execution_id == command.execution_id and r.stage is Stage.WRITER,
        until=lambda found: len(found) >= 1,
    )
    return record


async def keys_of(redis: Redis, instance_id: str) -> set[str]:
    # A thousand a step, as the purge scans: ten (Redis's default) takes tens of seconds on a Redis a benchmark
    # filled, longer than the leases written here live.
    patterns = instance_key_patterns(instance_id)
    return {key for pattern in patterns async for key in redis.scan_iter(match=pattern, count=1000)}


async def every_kind_of_state(redis: Redis, instance_id: str) -> None:
    """What the mapper and ingest keep for an instance, written through their own stores."""
    state = RedisStateStore(redis)
    writes = state.transaction()
    writes.merge(instance_id, System.MAILCHIMP, "ada@example.com", {"FNAME": "d1"}, source_ts_ms=1, origin="seen")
    writes.set_user_email(instance_id, "7", "ada@example.com")
    writes.park_held(instance_id, {"event": "{}", "paused": "1", "version": "1"})
    await writes.execute()
    assert await state.held.acquire(instance_id, "a-mapper")
    await RedisCursorStore(redis).save(instance_id, Cursor.starting_at(Position("2026-11-26T07:00:00.000Z", "7")))
    assert await PollerLocks(redis, ttl_s=60).hold(instance_id)
    claims = RedisEventClaims(redis, pending_ttl_s=60, done_ttl_s=600)
    await claims.claim(instance_id, "ev-1")
    await claims.confirm(instance_id, "ev-1")


def tandem(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
async def other(redis: Redis) -> AsyncIterator[str]:
    """An instance whose keys must survive the deletion of another (removed afterwards)."""
    instance_id = f"kept-{uuid.uuid4().hex[:8]}"
    yield instance_id
    await purge_instance(redis, instance_id)


async def test_delete_stops_the_instance_removes_its_state_and_the_id_can_start_again_clean(
    stack: RunningStack,
    redis: Redis,
    registry: TopicInstanceRegistry,
    other: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    instance = stack.instance
    email = f"del.{uuid.uuid4().hex[:8]}@example.com"
    first = upsert(instance.id, email)
    applied = await written(stack, first)
    assert applied.status is TraceStatus.SUCCEEDED, applied.summary
    for instance_id in (instance.id, other):
        await every_kind_of_state(redis, instance_id)
    kept = await keys_of(redis, other)
    before = await keys_of(redis, instance.id)
    # Every scheme's keys, and what the writer left: the applied write, the contact marker, the side it wrote.
    written_keys = idempotency_keys(instance.id, System.ACCESSPLANIT, first.identity.contact_key, first.idempotency_key)
    writer = {written_keys.applied, written_keys.applied_at, state_key(instance.id, System.ACCESSPLANIT, email)}
    assert before == {key.replace(other, instance.id) for key in kept} | writer

    deletions: list[tuple[str, datetime]] = []
    registry.on_delete(lambda instance_id, at: deletions.append((instance_id, at)))
    cli = ["--bootstrap-servers", stack.kafka, "--redis-url", stack.redis]
    asked_at = utcnow()
    code, out, err = await asyncio.to_thread(tandem, capsys, "instances", "delete", instance.id, "--yes", *cli)
    assert code == EXIT_OK, err
    assert out == (
        f"instance '{instance.id}' deleted: every service stops syncing it; "
        f"{len(before)} Redis key(s) of its state removed\n"
    )
    assert await keys_of(redis, instance.id) == set()
    assert await keys_of(redis, other) == kept

    async def dropped_from_the_registry() -> bool:
        return registry.get(instance.id) is None and registry.deleted_at(instance.id) is not None

    await eventually(dropped_from_the_registry)
    [(deleted_id, deleted_at)] = deletions
    assert deleted_id == instance.id and deleted_at == registry.deleted_at(instance.id)
    assert abs(deleted_at - asked_at) < timedelta(minutes=1)  # the tombstone's own time, not the reading's
    code, _, err = await asyncio.to_thread(tandem, capsys, "instances", "show", instance.id, *cli[:2])
    assert (code, err) == (EXIT_NOT_FOUND, f"tandem: no instance '{instance.id}'\n")

    # A command still on its way (on tandem.commands, a retry tier, or replayed from the dead letters) is dropped.
    late = upsert(instance.id, f"late.{uuid.uuid4().hex[:8]}@example.com")
    dropped = await written(stack, late)
    assert (dropped.status, dropped.summary) == (TraceStatus.SKIPPED, f"Dropped: instance {instance.id} was deleted")
    assert await keys_of(redis, instance.id) == set()

    # Applied again under the same id, it starts clean: the very change applied before is written again, not
    # skipped as "already applied" by a record the old instance left.
    await put_instance(connect(stack.kafka), instance)

    async def written_again() -> TraceRecord | None:
        again = await written(stack, first.model_copy(update={"execution_id": uuid.uuid4().hex}))
        # The writer may see the command before the configuration: it then drops it; the next one is written.
        return None if again.summary.startswith("Dropped: instance") else again

    again = await eventually(written_again, timeout=60)
    assert registry.get(instance.id) == instance and registry.deleted_at(instance.id) is None
    assert again.status is TraceStatus.SUCCEEDED, again.summary
    assert not again.summary.startswith("Skipped: already applied")


async def test_a_registry_starting_on_the_topic_reports_only_the_deletions_that_still_hold(
    kafka_bootstrap: str, redis_url: str
) -> None:
    """An id deleted and applied again (its tombstone not compacted yet) is live: a restarting service must not
    drop what it holds now (the mapper's held changes) because of the old deletion."""
    again, gone = (demo_instance().model_copy(update={"id": f"{name}-{uuid.uuid4().hex[:8]}"}) for name in "ag")
    connection = connect(kafka_bootstrap)
    try:
        for instance in (again, gone):
            await put_instance(connection, instance)
            await delete_instance(connection, instance.id)
        await put_instance(connection, again)

        registry = TopicInstanceRegistry(connection)
        deletions: list[str] = []
        registry.on_delete(lambda instance_id, _: deletions.append(instance_id))
        await registry.start()
        try:
            assert [i for i in deletions if i in (again.id, gone.id)] == [gone.id]
            assert registry.get(again.id) == again and registry.deleted_at(again.id) is None
            assert registry.get(gone.id) is None and registry.deleted_at(gone.id) is not None
        finally:
            await registry.stop()
    finally:
        await remove_instance(connection, redis_url, again.id)
