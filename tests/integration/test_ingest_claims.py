"""Ingest's duplicate check on the real Redis, with concurrent claims sent in shared pipelines."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence

import pytest
from redis.asyncio import Redis

from support.mapper import accessplanit_change
from tandem_ingest.dedupe import Claim, ClaimsUnavailable, RedisEventClaims
from tandem_ingest.intake import Intake
from tandem_ingest.publishing import KafkaUnavailable
from tandem_shared.contracts import ChangeEvent, Stage, utcnow
from tandem_shared.redis.client import connect_url
from tandem_shared.redis.keys import ingest_claim_key

pytestmark = pytest.mark.integration


@pytest.fixture
def claims(redis: Redis) -> RedisEventClaims:
    return RedisEventClaims(redis, pending_ttl_s=30, done_ttl_s=600)


def fresh_instance() -> str:
    return f"claims-{uuid.uuid4().hex[:8]}"


async def test_concurrent_claims_of_one_event_give_exactly_one_new(claims: RedisEventClaims) -> None:
    instance_id = fresh_instance()
    states = await asyncio.gather(*(claims.claim(instance_id, "e1") for _ in range(50)))
    assert Counter(states) == {Claim.NEW: 1, Claim.IN_FLIGHT: 49}


async def test_concurrent_claims_of_many_events_give_one_new_each(claims: RedisEventClaims) -> None:
    instance_id = fresh_instance()
    events = [f"e{i}" for i in range(40)]
    states = await asyncio.gather(*(claims.claim(instance_id, e) for e in events for _ in range(3)))
    per_event: dict[str, list[Claim]] = {}
    for (event_id, _), state in zip(((e, n) for e in events for n in range(3)), states, strict=True):
        per_event.setdefault(event_id, []).append(state)
    assert {e: Counter(s) for e, s in per_event.items()} == {e: {Claim.NEW: 1, Claim.IN_FLIGHT: 2} for e in events}


async def test_a_confirmed_claim_is_done_and_a_released_one_is_new_again(
    claims: RedisEventClaims, redis: Redis
) -> None:
    instance_id = fresh_instance()
    assert await claims.claim(instance_id, "done") is Claim.NEW
    assert await claims.claim(instance_id, "released") is Claim.NEW
    await asyncio.gather(claims.confirm(instance_id, "done"), claims.release(instance_id, "released"))
    assert await asyncio.gather(claims.claim(instance_id, "done"), claims.claim(instance_id, "released")) == [
        Claim.DONE,
        Claim.NEW,
    ]
    # The done mark carries the long TTL, the new pending claim the short one.
    assert await redis.pttl(ingest_claim_key(instance_id, "done")) > 30_000
    assert 0 < await redis.pttl(ingest_claim_key(instance_id, "released")) <= 30_000


class FailingPublisher:
    def __init__(self) -> None:
        self.calls = 0

    async def publish(
        self,
        event: ChangeEvent,
        *,
        stage: Stage = Stage.INGEST,
        notes: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.calls += 1
        await asyncio.sleep(0)
        raise KafkaUnavailable("broker unreachable")


async def test_failed_publishes_release_their_claims_under_concurrency(claims: RedisEventClaims) -> None:
    instance_id = fresh_instance()
    events = [accessplanit_change(instance_id, str(100 + i), at=utcnow()) for i in range(20)]
    publisher = FailingPublisher()
    results = await asyncio.gather(
        *(Intake(publisher, claims).submit(e, stage=Stage.INGEST) for e in events), return_exceptions=True
    )
    assert all(isinstance(r, KafkaUnavailable) for r in results)
    assert publisher.calls == len(events)
    again = await asyncio.gather(*(claims.claim(instance_id, e.event_id) for e in events))
    assert again == [Claim.NEW] * len(events)


async def test_an_unreachable_redis_fails_every_command_of_the_batch() -> None:
    unreachable = connect_url("redis://127.0.0.1:1/0", timeout_s=1)
    try:
        claims = RedisEventClaims(unreachable, pending_ttl_s=30, done_ttl_s=600)
        results = await asyncio.gather(*(claims.claim("i", f"e{n}") for n in range(5)), return_exceptions=True)
    finally:
        await unreachable.aclose()
    assert [type(r) for r in results] == [ClaimsUnavailable] * 5
