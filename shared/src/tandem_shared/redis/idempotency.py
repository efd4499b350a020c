"""Which changes were applied, in Redis: a write is claimed before it is made and recorded once it succeeded.

Per command, keyed by its idempotency key: `inflight:<token>` while one writer attempts it (expires after
`inflight_ttl_s`, so a writer that died mid-write never blocks it for good), then `done:<epoch ms>` for
`idempotency_ttl_s`. Per contact (instance, target, contact): a lock held during the write, so two commands for one
contact are never written at the same time — e.g. one from the main topic and one from a retry tier, or the look-up
and create of an accessplanit user — and the source time of the newest change applied, so an older retry or replay
is dropped instead of overwriting newer data. The three keys share a Redis Cluster hash slot
(`keys.idempotency_keys`).

The contact lock is not an owner lease (`tandem_shared.redis.lease`): one script takes it together with the
command's in-flight mark, after checking the command's applied record, and one script gives both back; taken apart,
a writer could hold the contact without the command or the command without the contact.

The writer writes and the CLI's replay reads (`applied_at`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError

from tandem_shared.contracts import SyncCommand
from tandem_shared.redis.client import connect_url
from tandem_shared.redis.keys import IdempotencyKeys, idempotency_keys
from tandem_shared.redis.pipeline import AutoPipeline
from tandem_shared.redis.scripts import LuaScript
from tandem_shared.redis.state import RedisStateStore, StateStore

DAY_S = 24 * 60 * 60

_CLAIM = LuaScript("""
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
""")

_DONE = LuaScript("""
redis.call('SET', KEYS[1], 'done:' .. ARGV[2], 'PX', ARGV[3])
local current = tonumber(redis.call('GET', KEYS[3]) or '-1')
if tonumber(ARGV[4]) > current then
  redis.call('SET', KEYS[3], ARGV[4], 'PX', ARGV[5])
end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return 1
""")

_RELEASE = LuaScript("""
if redis.call('GET', KEYS[1]) == 'inflight:' .. ARGV[1] then
  redis.call('DEL', KEYS[1])
end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return 1
""")


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
    # BUSY: how long until the other claim expires at the latest, and how long it has been held so far.
    wait_s: float = 0.0
    held_s: float = 0.0


class IdempotencyStore(Protocol):
    async def claim(self, command: SyncCommand, token: str) -> Claim: ...

    async def mark_done(self, command: SyncCommand, token: str, *, state: StateStore | None = None) -> None:
        """Records the command as applied; with `state`, also what the target now holds (`record_written`)."""
        ...

    async def release(self, command: SyncCommand, token: str) -> None: ...

    async def applied_at(self, command: SyncCommand) -> datetime | None: ...


def _micros(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def _from_micros(value: str) -> datetime | None:
    """The stored time, or None for one no datetime can hold (a change's time at the edge of the calendar, e.g.
    9999-12-31T23:59:59-14:00, is past year 9999 in UTC): it then orders nothing, rather than failing every claim
    of the contact for as long as the marker lives."""
    try:
        return datetime.fromtimestamp(int(value) / 1_000_000, tz=UTC)
    except (ValueError, OverflowError, OSError):
        return None


def redis_keys(command: SyncCommand) -> IdempotencyKeys:
    return idempotency_keys(command.instance_id, command.target, command.identity.contact_key, command.idempotency_key)


class RedisIdempotencyStore:
    def __init__(
        self,
        redis: Redis,
        *,
        inflight_ttl_s: float = 120.0,
        idempotency_ttl_s: int = 7 * DAY_S,
        contact_marker_ttl_s: int = 35 * DAY_S,
        owns_client: bool = False,
    ) -> None:
        """`owns_client`: `close` closes `redis` too (a client shared with other stores is closed by its opener)."""
        self._redis = redis
        # Claims, records and releases of the commands in hand fall due together under a backlog: each is its own
        # script call with its own answer, but those of one loop tick share one round trip.
        self._pipeline = AutoPipeline(redis)
        self._inflight_ms = int(inflight_ttl_s * 1000)
        self._done_ms = idempotency_ttl_s * 1000
        self._marker_ms = contact_marker_ttl_s * 1000
        self._owns_client = owns_client

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        inflight_ttl_s: float = 120.0,
        idempotency_ttl_s: int = 7 * DAY_S,
        contact_marker_ttl_s: int = 35 * DAY_S,
    ) -> RedisIdempotencyStore:
        """A store on a client of its own (closed with the store)."""
        return cls(
            connect_url(url),
            inflight_ttl_s=inflight_ttl_s,
            idempotency_ttl_s=idempotency_ttl_s,
            contact_marker_ttl_s=contact_marker_ttl_s,
            owns_client=True,
        )

    async def claim(self, command: SyncCommand, token: str) -> Claim:
        keys = redis_keys(command)
        [(state, value)] = await self._scripted(
            lambda pipe: _CLAIM.queue(pipe, keys, [token, self._inflight_ms]), self._reload(_CLAIM)
        )
        if state == ClaimState.DONE:
            return Claim(ClaimState.DONE, applied_at=datetime.fromtimestamp(int(value) / 1000, tz=UTC))
        if state == ClaimState.BUSY:
            pttl = int(value) if int(value) > 0 else self._inflight_ms
            return Claim(ClaimState.BUSY, wait_s=pttl / 1000, held_s=max(self._inflight_ms - pttl, 0) / 1000)
        return Claim(ClaimState.CLAIMED, last_applied=_from_micros(value) if value else None)

    async def mark_done(self, command: SyncCommand, token: str, *, state: StateStore | None = None) -> None:
        # One round trip for both records of a successful write (shared with other commands' calls of the same
        # tick). Not a transaction (the keys are in different cluster slots); each part is idempotent, so a failed
        # call is simply repeated. Another store than Redis's records the write on its own, afterwards.
        if state is not None and not isinstance(state, RedisStateStore):
            await self.mark_done(command, token)
            await state.record_written(command)
            return
        now_ms = int(datetime.now(UTC).timestamp() * 1000)
        keys = redis_keys(command)
        args: list[str | int] = [token, now_ms, self._done_ms, _micros(command.source_occurred_at), self._marker_ms]

        def queue(pipe: Pipeline) -> None:
            _DONE.queue(pipe, keys, args)
            if state is not None:
                state.queue_record_written(lambda script, k, a: script.queue(pipe, k, a), command)

        async def reload() -> None:
            await self._redis.script_load(_DONE.text)
            if state is not None:
                await state.load_scripts()

        await self._scripted(queue, reload)

    async def release(self, command: SyncCommand, token: str) -> None:
        keys = redis_keys(command)
        await self._scripted(lambda pipe: _RELEASE.queue(pipe, keys, [token]), self._reload(_RELEASE))

    def _reload(self, script: LuaScript) -> Callable[[], Awaitable[object]]:
        return lambda: self._redis.script_load(script.text)

    async def _scripted(
        self,
        queue: Callable[[Pipeline], object],
        reload: Callable[[], Awaitable[object]],
    ) -> list[Any]:
        """The replies of the script calls `queue` puts on the shared pipeline. Redis restarted and lost its
        scripts (NOSCRIPT): they are loaded, then the calls made once more."""
        try:
            return await self._pipeline.call(queue)
        except NoScriptError:
            await reload()
            return await self._pipeline.call(queue)

    async def applied_at(self, command: SyncCommand) -> datetime | None:
        value = await self._redis.get(redis_keys(command).applied)
        if isinstance(value, str) and value.startswith("done:"):
            return datetime.fromtimestamp(int(value[5:]) / 1000, tz=UTC)
        return None

    async def close(self) -> None:
        await self._pipeline.aclose()
        if self._owns_client:
            await self._redis.aclose()
