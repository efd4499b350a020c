"""The in-memory idempotency store (tests/fakes/idempotency.py) keeps the Redis store's rules — the same cases as
tests/integration/test_delivery_idempotency.py — so what the writer's unit tests show holds on Redis too."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fakes.idempotency import InMemoryIdempotencyStore
from support.commands import sync_command
from tandem_shared.contracts import SyncCommand, System
from tandem_shared.redis.idempotency import ClaimState

NOW = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def command(name: str, occurred: datetime = NOW) -> SyncCommand:
    payload = {"email_address": "ada@example.com", "merge_fields": {"FNAME": name}}
    return sync_command(
        "demo",
        System.MAILCHIMP,
        payload,
        email="ada@example.com",
        user_id="7",
        name=name,
        event_id=name,
        occurred=occurred,
    )


def store(clock: Clock) -> InMemoryIdempotencyStore:
    return InMemoryIdempotencyStore(inflight_ttl_s=0.5, idempotency_ttl_s=3600, contact_marker_ttl_s=7200, clock=clock)


async def test_a_claimed_command_is_busy_for_others_and_done_once_marked() -> None:
    clock = Clock()
    s = store(clock)
    cmd = command("Ada")
    assert (await s.claim(cmd, "w1")).state is ClaimState.CLAIMED
    clock.now += timedelta(seconds=0.2)
    busy = await s.claim(cmd, "w2")
    assert busy.state is ClaimState.BUSY and busy.wait_s == 0.3
    await s.mark_done(cmd, "w1")
    done = await s.claim(cmd, "w3")
    assert (done.state, done.applied_at) == (ClaimState.DONE, clock.now)
    assert await s.applied_at(cmd) == done.applied_at
    clock.now += timedelta(seconds=3600)
    assert await s.applied_at(cmd) is None, "the applied mark expires after idempotency_ttl_s"


async def test_a_claim_left_by_a_writer_that_died_expires_and_the_command_can_be_claimed_again() -> None:
    clock = Clock()
    s = store(clock)
    cmd = command("Ada")
    assert (await s.claim(cmd, "died")).state is ClaimState.CLAIMED
    clock.now += timedelta(seconds=0.5)
    assert (await s.claim(cmd, "restarted")).state is ClaimState.CLAIMED
    assert await s.applied_at(cmd) is None


async def test_release_frees_only_the_callers_own_claim() -> None:
    s = store(Clock())
    cmd = command("Ada")
    await s.claim(cmd, "w1")
    await s.release(cmd, "someone else")
    assert (await s.claim(cmd, "w2")).state is ClaimState.BUSY
    await s.release(cmd, "w1")
    assert (await s.claim(cmd, "w2")).state is ClaimState.CLAIMED


async def test_one_contact_is_written_by_one_command_at_a_time_and_remembers_its_newest_change() -> None:
    clock = Clock()
    s = store(clock)
    newer = command("Newer", NOW + timedelta(minutes=1))
    older = command("Older", NOW)
    assert (await s.claim(newer, "w1")).state is ClaimState.CLAIMED
    assert (await s.claim(older, "w2")).state is ClaimState.BUSY, "same contact, different command"
    await s.mark_done(newer, "w1")
    claim = await s.claim(older, "w2")
    assert claim.state is ClaimState.CLAIMED
    assert claim.last_applied == newer.source_occurred_at
    await s.mark_done(older, "w2")
    third = command("Third", NOW + timedelta(seconds=30))
    assert (await s.claim(third, "w3")).last_applied == newer.source_occurred_at, "the marker only moves forward"
    await s.release(third, "w3")
    clock.now += timedelta(seconds=7200)
    assert (await s.claim(third, "w4")).last_applied is None, "the marker expires after contact_marker_ttl_s"
