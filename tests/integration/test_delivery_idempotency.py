"""The writer's applied-change records on the real Redis: claims, expiry, per-contact lock, newest-change marker."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from support.commands import sync_command
from support.state import side
from support.waiting import eventually
from tandem_shared.contracts import (
    SyncCommand,
    System,
)
from tandem_shared.redis.idempotency import ClaimState, RedisIdempotencyStore, redis_keys
from tandem_shared.redis.state import RedisStateStore
from tandem_shared.sync.rules import field_digest

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
WEEK_S = 7 * 24 * 3600


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisIdempotencyStore]:
    s = RedisIdempotencyStore.from_url(
        redis_url, inflight_ttl_s=0.5, idempotency_ttl_s=WEEK_S, contact_marker_ttl_s=5 * WEEK_S
    )
    yield s
    await s.close()


@pytest.fixture
def instance_id() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def command(instance_id: str, name: str, occurred: datetime = NOW) -> SyncCommand:
    payload = {"email_address": "ada@example.com", "merge_fields": {"FNAME": name}}
    return sync_command(
        instance_id,
        System.MAILCHIMP,
        payload,
        email="ada@example.com",
        user_id="7",
        name=name,
        execution_id=name,
        event_id=name,
        occurred=occurred,
    )


async def test_a_claimed_command_is_busy_for_others_and_done_once_marked(
    store: RedisIdempotencyStore, instance_id: str
) -> None:
    cmd = command(instance_id, "Ada")
    assert (await store.claim(cmd, "w1")).state is ClaimState.CLAIMED
    busy = await store.claim(cmd, "w2")
    assert busy.state is ClaimState.BUSY and 0 < busy.wait_s <= 0.5
    assert busy.held_s == pytest.approx(0.5 - busy.wait_s, abs=0.001)  # held for as long as it has not lived yet
    await store.mark_done(cmd, "w1")
    done = await store.claim(cmd, "w3")
    assert done.state is ClaimState.DONE and done.applied_at is not None
    assert await store.applied_at(cmd) == done.applied_at
    ttl_ms = await store._redis.pttl(redis_keys(cmd)[0])
    assert WEEK_S * 1000 - 60_000 < ttl_ms <= WEEK_S * 1000


async def test_a_claim_left_by_a_writer_that_died_expires_and_the_command_can_be_claimed_again(
    store: RedisIdempotencyStore, instance_id: str
) -> None:
    cmd = command(instance_id, "Ada")
    assert (await store.claim(cmd, "died")).state is ClaimState.CLAIMED

    async def reclaimed() -> bool:
        return (await store.claim(cmd, "restarted")).state is ClaimState.CLAIMED

    assert await eventually(reclaimed, timeout=10)
    assert await store.applied_at(cmd) is None


async def test_release_frees_only_the_callers_own_claim(store: RedisIdempotencyStore, instance_id: str) -> None:
    cmd = command(instance_id, "Ada")
    await store.claim(cmd, "w1")
    await store.release(cmd, "someone else")
    assert (await store.claim(cmd, "w2")).state is ClaimState.BUSY
    await store.release(cmd, "w1")
    assert (await store.claim(cmd, "w2")).state is ClaimState.CLAIMED


async def test_one_contact_is_written_by_one_command_at_a_time_and_remembers_its_newest_change(
    store: RedisIdempotencyStore, instance_id: str
) -> None:
    newer = command(instance_id, "Newer", NOW + timedelta(minutes=1))
    older = command(instance_id, "Older", NOW)
    assert (await store.claim(newer, "w1")).state is ClaimState.CLAIMED
    assert (await store.claim(older, "w2")).state is ClaimState.BUSY, "same contact, different command"
    await store.mark_done(newer, "w1")
    claim = await store.claim(older, "w2")
    assert claim.state is ClaimState.CLAIMED
    assert claim.last_applied == newer.source_occurred_at
    await store.mark_done(older, "w2")
    third = command(instance_id, "Third", NOW + timedelta(seconds=30))
    assert (await store.claim(third, "w3")).last_applied == newer.source_occurred_at, "the marker only moves forward"


async def test_marking_done_with_the_sync_state_records_both_and_survives_redis_losing_its_scripts(
    store: RedisIdempotencyStore, instance_id: str, redis_url: str
) -> None:
    state = RedisStateStore.from_url(redis_url)
    try:
        first, renamed = command(instance_id, "Ada"), command(instance_id, "Augusta", NOW + timedelta(seconds=1))
        assert (await store.claim(first, "w1")).state is ClaimState.CLAIMED
        await store.mark_done(first, "w1", state=state)
        assert await store.applied_at(first) is not None
        held = await side(state, instance_id, System.MAILCHIMP, "ada@example.com")
        assert held is not None
        assert held.fields["FNAME"].digest == field_digest("Ada")
        assert held.last_origin == "written"

        # A restarted Redis has no scripts loaded: the pipeline loads them and goes again.
        await store._redis.script_flush()
        assert (await store.claim(renamed, "w2")).state is ClaimState.CLAIMED
        await store._redis.script_flush()
        await store.mark_done(renamed, "w2", state=state)
        assert await store.applied_at(renamed) is not None
        held = await side(state, instance_id, System.MAILCHIMP, "ada@example.com")
        assert held is not None and held.fields["FNAME"].digest == field_digest("Augusta")
        assert (await store.claim(command(instance_id, "Other"), "w3")).state is ClaimState.CLAIMED, "lock released"
        await store._redis.script_flush()
        await store.release(command(instance_id, "Other"), "w3")
        assert (await store.claim(command(instance_id, "Third"), "w4")).state is ClaimState.CLAIMED, "released"
    finally:
        await state.close()


class WrittenLog:
    """A sync-state store other than Redis's, as far as `mark_done` uses it."""

    def __init__(self) -> None:
        self.written: list[SyncCommand] = []

    async def record_written(self, command: SyncCommand) -> None:
        self.written.append(command)


async def test_marking_done_with_another_state_store_records_the_write_there_after_the_applied_mark(
    store: RedisIdempotencyStore, instance_id: str
) -> None:
    cmd = command(instance_id, "Ada")
    log = WrittenLog()
    assert (await store.claim(cmd, "w1")).state is ClaimState.CLAIMED
    await store.mark_done(cmd, "w1", state=log)  # type: ignore[arg-type]
    assert log.written == [cmd]
    assert await store.applied_at(cmd) is not None
    assert (await store.claim(command(instance_id, "Other"), "w2")).state is ClaimState.CLAIMED, "lock released"
