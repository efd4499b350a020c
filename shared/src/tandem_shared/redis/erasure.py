"""Erasing one contact from Tandem's Redis: sync state (forward pointers of moves from and to the address too), the
accessplanit user → address table, held changes, the writer's idempotency and newest-change markers, and an
interrupted reconciliation's checkpoint position at the address. Applied for an `ErasureRequest` (`tandem contacts
forget`).

The writer's slots of an accessplanit contact are named by user id, which only the user → address table links to
the address. The writer erases its own slots (`erase_writer_markers`, the links read first); the mapper, which owns
that table and deletes the links, erases the same slots before it does (`erase_contact`), so that whichever of the
two applies the request first, no slot is left that nothing links to the address any more. Deleting is idempotent:
the second finds nothing.
Writer claims (`:lock`) are left alone: they expire within the writer's in-flight TTL, and deleting one under a
write in progress would let a second writer in.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from pydantic import ValidationError
from redis.asyncio import Redis

from tandem_shared.contact_hash import contact_hash
from tandem_shared.contracts import ChangeEvent, System, email_key
from tandem_shared.redis.client import text
from tandem_shared.redis.keys import (
    contact_slot_pattern,
    erasure_offsets_key,
    held_key,
    legacy_state_key,
    moved_key,
    moved_key_pattern,
    reconcile_checkpoint_key,
    state_key,
    user_email_key,
)
from tandem_shared.sync.rules import Pointer


@dataclass
class Erased:
    """What was removed; an acknowledgement reports these counts, never the address."""

    state_keys: int = 0
    writer_keys: int = 0
    user_ids: int = 0
    held_changes: int = 0
    reconcile_positions: int = 0

    def counts(self) -> dict[str, int]:
        return {
            "sync state key(s)": self.state_keys,
            "writer marker(s)": self.writer_keys,
            "accessplanit user link(s)": self.user_ids,
            "held change(s)": self.held_changes,
            "reconciliation checkpoint position(s)": self.reconcile_positions,
        }


def _about(fields: Mapping[bytes | str, bytes | str] | None, address: str, users: Collection[str]) -> bool:
    """Whether a held change is about the contact: by address, or by an accessplanit user linked to it."""
    raw = (fields or {}).get(b"event") or (fields or {}).get("event")
    try:
        event = ChangeEvent.model_validate_json(raw or "")
    except ValidationError:
        return False
    identity = event.identity
    if identity.accessplanit_user_id is not None and identity.accessplanit_user_id in users:
        return True
    return any(email_key(a) == address for a in (identity.email, identity.old_email) if a)


async def _linked_users(redis: Redis, instance_id: str, address: str) -> list[str]:
    table = await redis.hgetall(user_email_key(instance_id))
    return [text(user) for user, value in table.items() if email_key(text(value)) == address]


async def _writer_keys(redis: Redis, instance_id: str, address: str, users: Iterable[str]) -> list[str]:
    contacts = [f"mc:{contact_hash(address)}", f"mc:{address}", *(f"ap:{user}" for user in users)]
    return [
        text(key)
        for contact in contacts
        async for key in redis.scan_iter(match=contact_slot_pattern(instance_id, contact), count=1000)
        if not text(key).endswith(":lock")
    ]


async def _pointers_to(redis: Redis, instance_id: str, address: str) -> list[str]:
    """Forward pointers of moves to the address (a pointer at an address the contact left names where it went)."""
    found = []
    async for key in redis.scan_iter(match=moved_key_pattern(instance_id), count=1000):
        value = await redis.get(key)
        if value is not None and email_key(Pointer.decode(text(value)).address) == address:
            found.append(text(key))
    return found


async def erase_writer_markers(redis: Redis, instance_ids: Iterable[str], email: str) -> int:
    """The writer's part: its idempotency and newest-change markers of the contact's slots; how many went."""
    address = email_key(email)
    removed = 0
    for instance_id in instance_ids:
        keys = await _writer_keys(redis, instance_id, address, await _linked_users(redis, instance_id, address))
        async with redis.pipeline(transaction=False) as pipe:
            for key in keys:  # one slot each
                pipe.delete(key)
            removed += sum(int(n) for n in await pipe.execute())
    return removed


async def erase_contact(redis: Redis, instance_ids: Iterable[str], email: str) -> Erased:
    address = email_key(email)
    erased = Erased()
    for instance_id in instance_ids:
        users = await _linked_users(redis, instance_id, address)
        writer_keys = await _writer_keys(redis, instance_id, address, users)
        state_keys = [
            key(instance_id, system, address) for system in System for key in (state_key, legacy_state_key, moved_key)
        ]
        state_keys += await _pointers_to(redis, instance_id, address)
        held = [
            text(entry_id)
            for entry_id, fields in await redis.xrange(held_key(instance_id)) or []
            if entry_id is not None and _about(fields, address, users)
        ]
        # An interrupted reconciliation's checkpoint is the last address it finished. Emptied, the run resumes from
        # the start: what it repeats it finds equal or repairs again, idempotently (a running one moves on anyway).
        checkpoint = reconcile_checkpoint_key(instance_id)
        position = await redis.hget(checkpoint, "after")
        at_address = position is not None and text(position) == address
        # Not one transaction: the writer's keys live in other Redis Cluster slots than the instance's.
        async with redis.pipeline(transaction=False) as pipe:
            pipe.delete(*state_keys)
            for key in writer_keys:  # one slot each
                pipe.delete(key)
            if users:
                pipe.hdel(user_email_key(instance_id), *users)
            if held:
                pipe.xdel(held_key(instance_id), *held)
            if at_address:
                pipe.hset(checkpoint, "after", "")
            results = await pipe.execute()
        erased.state_keys += int(results[0])
        erased.writer_keys += len(writer_keys)
        erased.user_ids += len(users)
        erased.held_changes += len(held)
        erased.reconcile_positions += int(at_address)
    return erased


class ContactEraser(Protocol):
    """Erases contacts, and remembers how far into `tandem.erasure` it has applied requests."""

    async def erase(self, instance_ids: Iterable[str], email: str) -> Erased: ...

    async def positions(self) -> dict[int, int]: ...

    async def applied(self, partition: int, next_offset: int) -> None: ...


class RedisErasureOffsets:
    """Where one service's applier is in `tandem.erasure` (partition → next offset), kept in Redis."""

    def __init__(self, redis: Redis, service: str) -> None:
        self._redis = redis
        self._offsets = erasure_offsets_key(service)

    async def positions(self) -> dict[int, int]:
        stored = await self._redis.hgetall(self._offsets)
        return {int(partition): int(offset) for partition, offset in stored.items()}

    async def applied(self, partition: int, next_offset: int) -> None:
        await self._redis.hset(self._offsets, str(partition), str(next_offset))


class RedisContactEraser(RedisErasureOffsets):
    """`erase_contact` on the process's Redis client, and where the applier is in `tandem.erasure`."""

    async def erase(self, instance_ids: Iterable[str], email: str) -> Erased:
        return await erase_contact(self._redis, instance_ids, email)
