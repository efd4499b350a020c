"""Tombstones: the addresses Tandem saw deleted on a side, so a reconciliation never creates them there again.

Each is kept as a keyed hash (HMAC-SHA256 under a secret of the installation, made once and kept in Redis): the set
holds no address and no unkeyed hash of one (an MD5 of an address is reversed with a list of addresses), so it can
outlive the erasure of a contact's data and still stop its re-creation.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Sequence

from redis.asyncio import Redis

from tandem_shared.contracts import ChangeEvent, ChangeKind, System, email_key
from tandem_shared.redis.client import text
from tandem_shared.redis.keys import TOMBSTONE_SECRET, tombstones_key, user_email_key


def digest(secret: bytes, email: str) -> str:
    return hmac.new(secret, email_key(email).encode("utf-8"), hashlib.sha256).hexdigest()[:40]


class Tombstones:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._secret: bytes | None = None

    async def _key(self) -> bytes:
        if self._secret is None:
            await self._redis.set(TOMBSTONE_SECRET, secrets.token_hex(32), nx=True)
            stored = await self._redis.get(TOMBSTONE_SECRET)
            if stored is None:
                raise RuntimeError("the tombstone secret vanished from Redis just after it was written")
            self._secret = text(stored).encode("utf-8")
        return self._secret

    async def hasher(self) -> Callable[[str], str]:
        key = await self._key()
        return lambda email: digest(key, email)

    async def record(self, instance_id: str, system: System, email: str) -> None:
        """`email` was deleted on `system`: never create it there again."""
        await self._redis.sadd(tombstones_key(instance_id, system), digest(await self._key(), email))

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
