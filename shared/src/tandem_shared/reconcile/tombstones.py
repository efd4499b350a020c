"""Tombstones: the addresses Tandem saw deleted on a side, so a reconciliation never creates them there again.

Each is kept as the address's keyed hash (`tandem_shared.contact_hash`, the one keyed hash of an address, under the
deployment's key): the set holds no address and no unkeyed hash of one (an MD5 of an address is reversed with a list
of addresses), so it outlives the erasure of a contact's data (`tandem contacts forget`) and still stops its
re-creation.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis

from tandem_shared.contact_hash import contact_hash
from tandem_shared.contracts import ChangeEvent, ChangeKind, System
from tandem_shared.redis.client import text
from tandem_shared.redis.keys import tombstones_key, user_email_key


class Tombstones:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def record(self, instance_id: str, system: System, email: str) -> None:
        """`email` was deleted on `system`: never create it there again."""
        await self._redis.sadd(tombstones_key(instance_id, system), contact_hash(email))

    async def record_deletions(self, events: Sequence[ChangeEvent]) -> None:
        """Keep a tombstone for each deletion among `events` (the mapper calls this with every batch it reads). A
        removed accessplanit user's event may carry only its ID: its last address is the one Tandem remembered."""
        for event in events:
            if event.kind is not ChangeKind.DELETED:
                continue
            email = event.identity.email
            user_id = event.identity.accessplanit_user_id
            if email is None and user_id:
                remembered = await self._redis.hget(user_email_key(event.instance_id), user_id)
                email = text(remembered) if remembered else None
            if email:
                await self.record(event.instance_id, event.source, email)

    async def load(self, instance_id: str) -> dict[System, frozenset[str]]:
        found: dict[System, frozenset[str]] = {}
        for system in System:
            members = await self._redis.smembers(tombstones_key(instance_id, system))
            found[system] = frozenset(text(m) for m in members)
        return found
