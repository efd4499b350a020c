"""Removing everything Tandem keeps in Redis for one instance, when the instance is deleted: a re-created id starts
clean instead of inheriting the old one's sync state, held changes, applied writes or poller cursor.
"""

from __future__ import annotations

from redis.asyncio import Redis

from tandem_shared.redis.keys import instance_key_patterns

# Keys per SCAN step and per round trip of deletions: small enough not to hold Redis up, large enough for speed.
_SCAN_COUNT = 1000


async def purge_instance(redis: Redis, instance_id: str) -> int:
    """Deletes every key of `instance_id` (`keys.instance_key_patterns`); returns how many there were.

    Keys are deleted one by one in pipelined rounds (no multi-key command: they lie in different cluster slots).
    A key written while the scan runs may survive it; its writer saw the instance before its deletion.
    """
    removed = 0
    for pattern in instance_key_patterns(instance_id):
        found: list[str] = []
        async for key in redis.scan_iter(match=pattern, count=_SCAN_COUNT):
            found.append(key)
            if len(found) >= _SCAN_COUNT:
                removed += await _unlink(redis, found)
                found = []
        removed += await _unlink(redis, found)
    return removed


async def _unlink(redis: Redis, keys: list[str]) -> int:
    if not keys:
        return 0
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.unlink(key)
        return sum(int(n) for n in await pipe.execute())
