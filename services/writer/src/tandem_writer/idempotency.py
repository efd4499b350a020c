"""Which changes were applied, in Redis: a write is claimed before it is made and recorded once it succeeded.

Per command, keyed by its idempotency key: `inflight:<token>` while one writer attempts it (expires after
`inflight_ttl_s`, so a writer that died mid-write never blocks it for good), then `done:<epoch ms>` for
`idempotency_ttl_s`. Per contact (instance, target, contact): a lock held during the write, so two commands for one
contact are never written at the same time — e.g. one from the main topic and one from a retry tier, or the look-up
and create of an accessplanit user — and the source time of the newest change applied, so an older retry or replay
is dropped instead of overwriting newer data. The three keys share a Redis Cluster hash slot.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError

from tandem_shared.contracts import SyncCommand
from tandem_shared.redis_batching import AutoPipeline
from tandem_shared.sync_state import SyncStateStore

DAY_S = 24 * 60 * 60

_CLAIM = """
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, 5) == 'done:' then
  return {'done', string.sub(v, 6)}
end
if v then
  return {'busy', tostring(redis.call('PTTL', KEYS[1]))}
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return {'busy', tostring(redis.call('PTTL', KEYS[2]))}
end
redis.call('SET', KEYS[1], 'inflight:' .. ARGV[1], 'NX', 'PX', ARGV[2])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return {'claimed', redis.call('GET', KEYS[3]) or ''}
"""

_DONE = """
redis.call('SET', KEYS[1], 'done:' .. ARGV[2], 'PX', ARGV[3])
local current = tonumber(redis.call('GET', KEYS[3]) or '-1')
if tonumber(ARGV[4]) > current then
  redis.call('SET', KEYS[3], ARGV[4], 'PX', ARGV[5])
end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == 'inflight:' .. ARGV[1] then
  redis.call('DEL', KEYS[1])
end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return 1
"""


class ClaimState(StrEnum):
    CLAIMED = "claimed"
    DONE = "done"
    BUSY = "busy"


@dataclass(frozen=True)
class Claim:
    state: ClaimState
    # CLAIMED: source time of the newest change applied to this contact so far.
    last_applied: datetime | None = None
    # DONE: when the command was recorded as applied.
    applied_at: datetime | None = None
    # BUSY: how long until the other claim expires at the latest.
    wait_s: float = 0.0


class IdempotencyStore(Protocol):
    async def claim(self, command: SyncCommand, token: str) -> Claim: ...

    async def mark_done(self, command: SyncCommand, token: str, *, state: SyncStateStore | None = None) -> None:
        """Records the command as applied; with `state`, also what the target now holds (`record_written`)."""
        ...

    async def release(self, command: SyncCommand, token: str) -> None: ...

    async def applied_at(self, command: SyncCommand) -> datetime | None: ...


def _micros(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def _from_micros(value: str) -> datetime:
    return datetime.fromtimestamp(int(value) / 1_000_000, tz=UTC)


def redis_keys(command: SyncCommand) -> tuple[str, str, str]:
    """(applied key, contact lock, contact's last applied change): one hash slot per contact."""
    slot = f"{{tandem|{command.instance_id}|{command.target.value}|{command.identity.contact_key}}}"
    return f"{slot}:key:{command.idempotency_key}", f"{slot}:lock", f"{slot}:applied-at"


class RedisIdempotencyStore:
    def __init__(
        self,
        redis: Redis,
        *,
        inflight_ttl_s: float = 120.0,
        idempotency_ttl_s: int = 7 * DAY_S,
        contact_marker_ttl_s: int = 35 * DAY_S,
    ) -> None:
        self._redis = redis
        # Claims, records and releases of the commands in hand fall due together under a backlog: each is its own
        # script call with its own answer, but those of one loop tick share one round trip.
        self._pipeline = AutoPipeline(redis)
        self._inflight_ms = int(inflight_ttl_s * 1000)
        self._done_ms = idempotency_ttl_s * 1000
        self._marker_ms = contact_marker_ttl_s * 1000
        self._claim = redis.register_script(_CLAIM)
        self._done = redis.register_script(_DONE)
        self._release = redis.register_script(_RELEASE)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        inflight_ttl_s: float = 120.0,
        idempotency_ttl_s: int = 7 * DAY_S,
        contact_marker_ttl_s: int = 35 * DAY_S,
        max_connections: int = 32,
    ) -> RedisIdempotencyStore:
        # Hundreds of commands in hand at once would each open a connection, beyond the default pool of 100 (which
        # then fails the call): past `max_connections` a call waits for a free connection instead.
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=20,
            decode_responses=True,
            socket_timeout=5.0,
            socket_connect_timeout=5.0,
        )
        client = Redis(connection_pool=pool)
        return cls(
            client,
            inflight_ttl_s=inflight_ttl_s,
            idempotency_ttl_s=idempotency_ttl_s,
            contact_marker_ttl_s=contact_marker_ttl_s,
        )

    async def claim(self, command: SyncCommand, token: str) -> Claim:
        keys = redis_keys(command)
        [(state, value)] = await self._scripted(
            lambda pipe: pipe.evalsha(self._claim.sha, 3, *keys, token, self._inflight_ms), self._reload(_CLAIM)
        )
        if state == ClaimState.DONE:
            return Claim(ClaimState.DONE, applied_at=datetime.fromtimestamp(int(value) / 1000, tz=UTC))
        if state == ClaimState.BUSY:
            pttl = int(value)
            return Claim(ClaimState.BUSY, wait_s=(pttl if pttl > 0 else self._inflight_ms) / 1000)
        return Claim(ClaimState.CLAIMED, last_applied=_from_micros(value) if value else None)

    async def mark_done(self, command: SyncCommand, token: str, *, state: SyncStateStore | None = None) -> None:
        # One round trip for both records of a successful write (shared with other commands' calls of the same
        # tick). Not a transaction (the keys are in different cluster slots); each part is idempotent, so a failed
        # call is simply repeated.
        now_ms = int(datetime.now(UTC).timestamp() * 1000)
        keys = redis_keys(command)
        args: list[str | int] = [token, now_ms, self._done_ms, _micros(command.source_occurred_at), self._marker_ms]

        def queue(pipe: Pipeline) -> None:
            pipe.evalsha(self._done.sha, 3, *keys, *args)
            if state is not None:
                state.record_written_into(pipe, command)

        async def reload() -> None:
            await self._redis.script_load(_DONE)
            if state is not None:
                await state.load_scripts()

        await self._scripted(queue, reload)

    async def release(self, command: SyncCommand, token: str) -> None:
        keys = redis_keys(command)
        await self._scripted(lambda pipe: pipe.evalsha(self._release.sha, 3, *keys, token), self._reload(_RELEASE))

    def _reload(self, script: str) -> Callable[[], Awaitable[object]]:
        return lambda: self._redis.script_load(script)

    async def _scripted(
        self, queue: Callable[[Pipeline], object], reload: Callable[[], Awaitable[object]]
    ) -> list[Any]:
        """The replies of the script calls `queue` puts on the shared pipeline. Redis restarted and lost its
        scripts (NOSCRIPT): they are loaded, then the calls made once more."""
        try:
            return await self._pipeline.call(queue)
        except NoScriptError:
            await reload()
            return await self._pipeline.call(queue)

    async def applied_at(self, command: SyncCommand) -> datetime | None:
        value = await self._redis.get(redis_keys(command)[0])
        if isinstance(value, str) and value.startswith("done:"):
            return datetime.fromtimestamp(int(value[5:]) / 1000, tz=UTC)
        return None

    async def close(self) -> None:
        await self._pipeline.aclose()
        await self._redis.aclose()
