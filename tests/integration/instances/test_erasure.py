"""`erase_contact` removes one contact from Redis (state, user link, held changes, writer markers) and no other;
`erase_writer_markers` the writer's markers only."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from support.mapper import accessplanit_change, mailchimp_change
from tandem_shared.contracts import ContactIdentity, System
from tandem_shared.redis.erasure import erase_contact, erase_writer_markers
from tandem_shared.redis.keys import (
    held_key,
    idempotency_keys,
    legacy_state_key,
    moved_key,
    reconcile_checkpoint_key,
    state_key,
    user_email_key,
)
from tandem_shared.redis.state import RedisStateStore

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


async def seed(redis: Redis, instance_id: str, email: str, user_id: str) -> list[str]:
    """Everything Tandem keeps in Redis about one contact known on both sides; returns the keys."""
    mc_contact = ContactIdentity(email=email).contact_key
    keys = [
        state_key(instance_id, System.MAILCHIMP, email),
        state_key(instance_id, System.ACCESSPLANIT, email),
        legacy_state_key(instance_id, System.MAILCHIMP, email),
    ]
    for key in keys:
        await redis.hset(key, "_last", "seen|1")
    for target, contact in ((System.MAILCHIMP, f"ap:{user_id}"), (System.ACCESSPLANIT, mc_contact)):
        marker = idempotency_keys(instance_id, target, contact, "k1")
        await redis.set(marker.applied, "done:1")
        await redis.set(marker.applied_at, "1")
        keys += [marker.applied, marker.applied_at]
    legacy_slot = idempotency_keys(instance_id, System.ACCESSPLANIT, f"mc:{email}", "k0").applied
    await redis.set(legacy_slot, "done:1")
    keys.append(legacy_slot)
    await redis.hset(user_email_key(instance_id), user_id, email)
    return keys


async def test_one_contact_is_erased_and_the_others_stay(redis: Redis) -> None:
    instance_id = f"erase-{uuid.uuid4().hex[:8]}"
    ada = await seed(redis, instance_id, "ada@example.com", "7")
    bob = await seed(redis, instance_id, "bob@example.com", "8")
    lock = idempotency_keys(instance_id, System.MAILCHIMP, "ap:7", "k1").lock
    await redis.set(lock, "token")
    held = [
        accessplanit_change(instance_id, "7", at=T0),
        mailchimp_change(instance_id, "Ada@Example.com", at=T0),
        accessplanit_change(instance_id, "8", at=T0),
    ]
    for event in held:
        await redis.xadd(held_key(instance_id), {"event": event.model_dump_json()})
    # accessplanit_change names user 7 user7@example.com: link that address to the contact being erased.
    await redis.hset(user_email_key(instance_id), "7", "ada@example.com")

    erased = await erase_contact(redis, [instance_id], " ADA@example.com")

    assert [await redis.exists(k) for k in ada] == [0] * len(ada)
    assert [await redis.exists(k) for k in bob] == [1] * len(bob)
    assert await redis.hgetall(user_email_key(instance_id)) == {"8": "bob@example.com"}
    remaining = [fields["event"] for _, fields in await redis.xrange(held_key(instance_id))]
    assert remaining == [held[2].model_dump_json()]  # user 7's change too: the user is linked to the address
    assert await redis.get(lock) == "token"  # a claim under a write in progress expires on its own
    assert (erased.state_keys, erased.writer_keys, erased.user_ids, erased.held_changes) == (3, 5, 1, 2)


async def test_the_forward_pointers_of_moves_from_and_to_the_address_are_erased(redis: Redis) -> None:
    instance_id = f"erase-{uuid.uuid4().hex[:8]}"
    moves = RedisStateStore(redis).transaction()
    moves.move(instance_id, System.ACCESSPLANIT, "ada@example.com", "ada.king@example.com", 1)
    moves.move(instance_id, System.MAILCHIMP, "ada.king@example.com", "ada.byron@example.com", 2)
    moves.move(instance_id, System.MAILCHIMP, "bob@example.com", "bob.k@example.com", 3)
    await moves.execute()

    erased = await erase_contact(redis, [instance_id], "ADA.KING@example.com")

    assert await redis.exists(moved_key(instance_id, System.ACCESSPLANIT, "ada@example.com")) == 0  # to it
    assert await redis.exists(moved_key(instance_id, System.MAILCHIMP, "ada.king@example.com")) == 0  # from it
    assert await redis.get(moved_key(instance_id, System.MAILCHIMP, "bob@example.com")) == "3 bob.k@example.com"
    assert erased.state_keys == 2


async def test_the_writer_erases_its_own_markers_and_nothing_else(redis: Redis) -> None:
    instance_id = f"erase-{uuid.uuid4().hex[:8]}"
    ada = await seed(redis, instance_id, "ada@example.com", "7")
    bob = await seed(redis, instance_id, "bob@example.com", "8")
    lock = idempotency_keys(instance_id, System.MAILCHIMP, "ap:7", "k1").lock
    await redis.set(lock, "token")

    removed = await erase_writer_markers(redis, [instance_id], "Ada@Example.com")

    # seed: 3 state keys, then 2 markers per target, then the legacy `mc:<address>` slot
    markers, others = ada[3:], ada[:3]
    assert removed == len(markers) == 5
    assert [await redis.exists(k) for k in markers] == [0] * len(markers)
    assert [await redis.exists(k) for k in others + bob] == [1] * len(others + bob)  # the mapper's to erase
    assert await redis.hget(user_email_key(instance_id), "7") == "ada@example.com"
    assert await redis.get(lock) == "token"
    assert await erase_writer_markers(redis, [instance_id], "ada@example.com") == 0  # the second finds nothing


async def test_an_interrupted_reconciliations_position_at_the_address_is_erased(redis: Redis) -> None:
    """The checkpoint names the last address a run finished; erased, the run resumes from the start instead."""
    at_ada, elsewhere = (f"erase-{uuid.uuid4().hex[:8]}" for _ in range(2))
    await redis.hset(reconcile_checkpoint_key(at_ada), mapping={"run_id": "r1", "after": "ada@example.com"})
    await redis.hset(reconcile_checkpoint_key(elsewhere), mapping={"run_id": "r2", "after": "bob@example.com"})

    erased = await erase_contact(redis, [at_ada, elsewhere], "Ada@Example.com")

    assert await redis.hgetall(reconcile_checkpoint_key(at_ada)) == {"run_id": "r1", "after": ""}
    assert await redis.hget(reconcile_checkpoint_key(elsewhere), "after") == "bob@example.com"
    assert erased.reconcile_positions == 1
