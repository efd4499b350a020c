"""The sync-state store: what Tandem knows each side holds (`tandem_shared.sync.rules`), kept in Redis.

`StateStore` is the port the mapper and the writer use: `load_many` reads everything a batch needs in one round
trip; a `StateTransaction` collects changes and applies them in one (MULTI/EXEC). `RedisStateStore` is the
adapter; its Lua scripts keep last-writer-wins per field and move a contact's state to a new address, and a
transaction sends its calls as one script per instance.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from redis.asyncio import Redis

from tandem_shared.contracts import SyncCommand, System
from tandem_shared.redis.client import connect_url, text
from tandem_shared.redis.held import HeldStore, RedisHeldStore
from tandem_shared.redis.keys import held_key, legacy_state_key, moved_key, state_key, user_email_key
from tandem_shared.redis.scripts import BatchedScripts, LuaScript, ScriptBatch, ScriptCall
from tandem_shared.sync.rules import (
    DEFAULT_RECENT_WINDOW_MS,
    DEFAULT_TTL_S,
    HELD_AT_FIELD,
    USER_ID_FIELD,
    AbandonedMarks,
    Origin,
    Pointer,
    StateSnapshot,
    expected_write,
    parse_state,
    recorded_write,
    side_key,
)

# Last-writer-wins per field: a value replaces the stored one only when it differs and is not older. A write by
# Tandem is also remembered on its own for a while, so a late echo of an earlier write is still recognised, and so
# is the value it replaced (`o:`), so a change read from the side before the write landed is not taken for news.
# ARGV: source ts ms, origin, ttl s, now ms, recent window ms, then (field, digest) pairs.
_MERGE = LuaScript("""
local key = KEYS[1]
local ts = tonumber(ARGV[1])
local origin = ARGV[2]
local now = tonumber(ARGV[4])
local window = tonumber(ARGV[5])
if origin == 'written' then
  local all = redis.call('HGETALL', key)
  for j = 1, #all, 2 do
    if string.sub(all[j], 1, 2) == 'r:' then
      local recorded = tonumber(string.match(all[j + 1], '|(%d+)$'))
      if recorded <= now - window then redis.call('HDEL', key, all[j]) end
    elseif string.sub(all[j], 1, 2) == 'p:' or string.sub(all[j], 1, 2) == 'o:' then
      local noted = tonumber(string.match(all[j + 1], '^(%d+)'))
      if noted == nil or noted <= now - window then redis.call('HDEL', key, all[j]) end
    end
  end
end
local changed = false
for i = 6, #ARGV, 2 do
  local name, digest = ARGV[i], ARGV[i + 1]
  local current = redis.call('HGET', key, 'f:' .. name)
  local take = true
  if current then
    local cd, cts = string.match(current, '^([^|]*)|(%d+)|')
    if cd == digest or tonumber(cts) > ts then take = false end
  end
  if take then
    if origin == 'written' and current then
      redis.call('HSET', key, 'o:' .. name .. '|' .. string.match(current, '^([^|]*)|'), ARGV[4])
    end
    redis.call('HSET', key, 'f:' .. name, digest .. '|' .. ARGV[1] .. '|' .. origin)
    changed = true
  end
  if origin == 'written' then
    redis.call('HSET', key, 'r:' .. name .. '|' .. digest, ARGV[1] .. '|' .. ARGV[4])
    redis.call('HDEL', key, 'p:' .. name .. '|' .. digest)
  end
end
if origin == 'written' or changed or redis.call('HEXISTS', key, '_last') == 0 then
  redis.call('HSET', key, '_last', origin .. '|' .. ARGV[1])
end
redis.call('EXPIRE', key, tonumber(ARGV[3]))
if changed then return 1 end
return 0
""")

# Pending marks of a write that will never land, cleared only while they are still that command's: a later command
# writing the same value has overwritten the mark with its own id. ARGV: command id, then "<field>|<digest>" marks.
_CLEAR_PENDING = LuaScript("""
local key = KEYS[1]
local cleared = 0
for i = 2, #ARGV do
  local mark = redis.call('HGET', key, 'p:' .. ARGV[i])
  if mark and string.match(mark, '|(.*)$') == ARGV[1] then
    redis.call('HDEL', key, 'p:' .. ARGV[i])
    cleared = cleared + 1
  end
end
return cleared
""")

# A contact's state moves to its new address, and the old address keeps a forward pointer to the new one for a
# while (a change still naming it finds the contact, docs/convergence.md "Moves"); a pointer at the new address (a
# contact moving back) goes. State already at the new address (a write recorded there, through the pointer, before
# the move itself was decided) is merged with, not replaced: per field the later value, everything else kept.
# KEYS: state at old, state at new, pointer at old, pointer at new. ARGV: the pointer (`Pointer.encode`), its ttl s.
_MOVE = LuaScript("""
if KEYS[1] == KEYS[2] then return 0 end
redis.call('SET', KEYS[3], ARGV[1], 'EX', tonumber(ARGV[2]))
redis.call('DEL', KEYS[4])
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('RENAME', KEYS[1], KEYS[2])
  return 1
end
local all = redis.call('HGETALL', KEYS[1])
for j = 1, #all, 2 do
  local name, value = all[j], all[j + 1]
  local current = redis.call('HGET', KEYS[2], name)
  if not current then
    redis.call('HSET', KEYS[2], name, value)
  elseif string.sub(name, 1, 2) == 'f:' then
    local ts = tonumber(string.match(value, '^[^|]*|(%d+)|'))
    if ts > tonumber(string.match(current, '^[^|]*|(%d+)|')) then redis.call('HSET', KEYS[2], name, value) end
  end
end
redis.call('DEL', KEYS[1])
return 1
""")

# The address an accessplanit user has (KEYS[1], the instance's user → address hash), and the user seen at that
# address, kept on the address's state (KEYS[2]; never creating a state of its own). ARGV: user id, address, the
# state's user field.
_LINK_USER = LuaScript("""
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('HSET', KEYS[2], ARGV[3], ARGV[1]) end
return 0
""")
# Fields set on a contact's state, whose expiry starts again: the note of a write about to be sent (`expected_write`),
# or where a side holds the contact instead (`hold_at`). KEYS: the state. ARGV: the ttl s, then (field, value) pairs.
_SET_FIELDS = LuaScript("""
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return 0
""")

# A change held while its instance is paused, appended to the instance's held stream. ARGV: (field, value) pairs.
_PARK = LuaScript("""
redis.call('XADD', KEYS[1], '*', unpack(ARGV))
return 0
""")

# Every script a `RedisStateTransaction` calls, callable together.
_BATCHED = BatchedScripts((_MERGE, _MOVE, _LINK_USER, _SET_FIELDS, _CLEAR_PENDING, _PARK))

# A contact's state under its legacy name (`legacy_state_key`, before keyed hashes) moves to its current name, unless
# that exists already (written since the upgrade): then the legacy copy is stale and goes.
_ADOPT = LuaScript("""
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('DEL', KEYS[1]) return 0 end
redis.call('RENAME', KEYS[1], KEYS[2])
return 1
""")

# Everything one `load_many` reads, in one call (one command to pack and one reply to parse, rather than three per
# side and one per user or instance: their handling by the client was most of the mapper's CPU per change).
# KEYS: the sides' state keys, then their forward pointers, then their legacy state keys (n each), then the user
# address hashes (m), then the held streams (k). ARGV: n, m, k, then the m user ids.
# Returns {states (each HGETALL's flat list), pointers, legacy EXISTS, user addresses, XLENs}; a missing value is
# false, which Redis answers as nil (it keeps its place in the list, unlike a Lua nil).
_LOAD = LuaScript("""
local n, m, k = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local states, moves, legacy, users, backlogs = {}, {}, {}, {}, {}
for i = 1, n do
  states[i] = redis.call('HGETALL', KEYS[i])
  moves[i] = redis.call('GET', KEYS[n + i])
  legacy[i] = redis.call('EXISTS', KEYS[2 * n + i])
end
for i = 1, m do
  users[i] = redis.call('HGET', KEYS[3 * n + i], ARGV[3 + i])
end
for i = 1, k do
  backlogs[i] = redis.call('XLEN', KEYS[3 * n + m + i])
end
return {states, moves, legacy, users, backlogs}
""")

Side = tuple[str, System, str]  # (instance, system, email)


class StateTransaction(Protocol):
    """State changes collected for one round trip, applied all or none by `execute`."""

    def __len__(self) -> int: ...

    def merge(
        self,
        instance_id: str,
        system: System,
        email: str,
        digests: Mapping[str, str],
        *,
        source_ts_ms: int,
        origin: Origin,
    ) -> None:
        """The side holds these field digests as of `source_ts_ms` (last writer wins per field)."""
        ...

    def move(self, instance_id: str, system: System, old_email: str, new_email: str, moved_ms: int) -> None:
        """The contact's address changed (at `moved_ms`, by its source's clock): what is known about it moves to the
        new address, and the old address points to the new one for a while (`StateSnapshot.moved_to`/`moved_at`)."""
        ...

    def set_user_email(self, instance_id: str, user_id: str, email: str) -> None:
        """The accessplanit user's last address; the user id is also kept on that address's state, if any."""
        ...

    def hold_at(self, instance_id: str, system: System, email: str, held_at: str) -> None:
        """`system` holds the contact it would hold at `email` at `held_at` instead (it refused the move)."""
        ...

    def expect_write(self, command: SyncCommand) -> None:
        """The mapper's note, before a command leaves it, that Tandem is about to write these values: the target's
        webhook for the write may come back before the writer recorded it. What the target holds changes only
        with `record_written`."""
        ...

    def record_written(self, command: SyncCommand) -> None:
        """The writer's success hook: the target now holds the command's payload."""
        ...

    def clear_pending(self, abandoned: AbandonedMarks) -> None:
        """The writer's note that these pending marks' write will never land (`rules.abandoned_marks`): each is
        removed while it is still the command's own."""
        ...

    def park_held(self, instance_id: str, fields: Mapping[str, str]) -> None:
        """Holds a change of a paused (or backlogged) instance: parked when, and only when, the rest applies."""
        ...

    async def execute(self) -> None: ...


class StateStore(Protocol):
    @property
    def held(self) -> HeldStore: ...

    async def load_many(
        self,
        sides: Iterable[Side],
        *,
        user_ids: Iterable[tuple[str, str]] = (),
        backlogs: Iterable[str] = (),
    ) -> StateSnapshot:
        """Several contacts' state, accessplanit users' last addresses and held-change backlogs in one read.

        `sides` are (instance, system, email); `user_ids` (instance, accessplanit user id); `backlogs` instance ids.
        """
        ...

    def transaction(self) -> StateTransaction: ...

    async def record_written(self, command: SyncCommand) -> None:
        """`record_written` in a transaction of its own."""
        ...

    async def clear_pending(self, abandoned: AbandonedMarks) -> None:
        """`clear_pending` in a transaction of its own."""
        ...

    async def close(self) -> None: ...


def _pairs(fields: Mapping[str, str]) -> list[str | int]:
    """(field, value) pairs as a script's arguments: field, value, field, value, …"""
    return [item for pair in fields.items() for item in pair]


class RedisStateTransaction:
    """One MULTI/EXEC: a connection lost before EXEC applies none of it.

    Its calls go as one script per instance (`ScriptBatch`): the client parses one reply for the instance's calls
    rather than two for each (per round of the mapper, hundreds), and the script, sent whole, needs no reload after
    a Redis restart. As with a command failing inside MULTI/EXEC, a call that fails raises at `execute`, and Redis
    keeps what ran before it; the calls after it in the same instance's script do not run.
    """

    def __init__(self, store: RedisStateStore, redis: Redis) -> None:
        self._store = store
        self._redis = redis
        self._calls = ScriptBatch(_BATCHED)

    def __len__(self) -> int:
        return len(self._calls)

    def merge(
        self,
        instance_id: str,
        system: System,
        email: str,
        digests: Mapping[str, str],
        *,
        source_ts_ms: int,
        origin: Origin,
    ) -> None:
        self._store.queue_merge(self._calls, state_key(instance_id, system, email), digests, source_ts_ms, origin)

    def move(self, instance_id: str, system: System, old_email: str, new_email: str, moved_ms: int) -> None:
        self._store.queue_move(self._calls, instance_id, system, old_email, new_email, moved_ms)

    def set_user_email(self, instance_id: str, user_id: str, email: str) -> None:
        keys = [user_email_key(instance_id), state_key(instance_id, System.ACCESSPLANIT, email)]
        self._calls(_LINK_USER, keys, [user_id, email, USER_ID_FIELD])

    def hold_at(self, instance_id: str, system: System, email: str, held_at: str) -> None:
        key = state_key(instance_id, system, email)
        self._calls(_SET_FIELDS, [key], [self._store.ttl_s, HELD_AT_FIELD, held_at])

    def expect_write(self, command: SyncCommand) -> None:
        expected = expected_write(command, self._store.now_ms())
        if expected is None:
            return
        args = [self._store.ttl_s, *_pairs(expected.fields)]
        self._calls(_SET_FIELDS, [state_key(expected.instance_id, expected.system, expected.email)], args)

    def record_written(self, command: SyncCommand) -> None:
        self._store.queue_record_written(self._calls, command)

    def clear_pending(self, abandoned: AbandonedMarks) -> None:
        key = state_key(abandoned.instance_id, abandoned.system, abandoned.email)
        self._calls(_CLEAR_PENDING, [key], [abandoned.command_id, *abandoned.marks])

    def park_held(self, instance_id: str, fields: Mapping[str, str]) -> None:
        self._calls(_PARK, [held_key(instance_id)], _pairs(fields))

    async def execute(self) -> None:
        try:
            if len(self._calls):
                async with self._redis.pipeline(transaction=True) as pipe:
                    self._calls.queue(pipe)
                    await pipe.execute()
        finally:
            self._calls.clear()


class RedisStateStore:
    def __init__(
        self,
        redis: Redis,
        *,
        ttl_s: int = DEFAULT_TTL_S,
        recent_window_ms: int = DEFAULT_RECENT_WINDOW_MS,
        clock: Callable[[], int] = lambda: int(time.time() * 1000),
        held_lease_s: float = 30.0,
        owns_client: bool = False,
    ) -> None:
        """`owns_client`: `close` closes `redis` too (a client shared with other stores is closed by its opener)."""
        self._redis = redis
        self._ttl_s = ttl_s
        self._recent_window_ms = recent_window_ms
        self._clock = clock
        self._held = RedisHeldStore(redis, lease_s=held_lease_s)
        self._owns_client = owns_client

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        ttl_s: int = DEFAULT_TTL_S,
        recent_window_ms: int = DEFAULT_RECENT_WINDOW_MS,
        clock: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> RedisStateStore:
        """A store on a client of its own (closed with the store)."""
        return cls(connect_url(url), ttl_s=ttl_s, recent_window_ms=recent_window_ms, clock=clock, owns_client=True)

    @property
    def held(self) -> RedisHeldStore:
        return self._held

    @property
    def ttl_s(self) -> int:
        return self._ttl_s

    def now_ms(self) -> int:
        return self._clock()

    async def close(self) -> None:
        if self._owns_client:
            await self._redis.aclose()

    async def load_many(
        self,
        sides: Iterable[Side],
        *,
        user_ids: Iterable[tuple[str, str]] = (),
        backlogs: Iterable[str] = (),
    ) -> StateSnapshot:
        wanted = list(dict.fromkeys(side_key(*side) for side in sides))
        keys = [state_key(*side) for side in wanted]
        users = list(dict.fromkeys(user_ids))
        instances = list(dict.fromkeys(backlogs))
        if not keys and not users and not instances:
            return StateSnapshot({}, {}, {})
        legacy = [legacy_state_key(*side) for side in wanted]
        # One script call per instance: its keys share a Redis Cluster slot (`keys`), a batch's instances need not.
        by_instance: dict[str, tuple[list[int], list[int], list[int]]] = {}
        for i, side in enumerate(wanted):
            by_instance.setdefault(side[0], ([], [], []))[0].append(i)
        for i, (instance_id, _) in enumerate(users):
            by_instance.setdefault(instance_id, ([], [], []))[1].append(i)
        for i, instance_id in enumerate(instances):
            by_instance.setdefault(instance_id, ([], [], []))[2].append(i)
        async with self._redis.pipeline(transaction=False) as pipe:
            for side_at, user_at, instance_at in by_instance.values():
                script_keys = [
                    *(keys[i] for i in side_at),
                    *(moved_key(*wanted[i]) for i in side_at),
                    *(legacy[i] for i in side_at),
                    *(user_email_key(users[i][0]) for i in user_at),
                    *(held_key(instances[i]) for i in instance_at),
                ]
                # EVAL, not EVALSHA: one call per instance and batch, and it needs no reload after a Redis restart.
                pipe.eval(
                    _LOAD.text,
                    len(script_keys),
                    *script_keys,
                    len(side_at),
                    len(user_at),
                    len(instance_at),
                    *(users[i][1] for i in user_at),
                )
            replies = await pipe.execute()
        flat_sides: list[Any] = [None] * len(wanted)
        raw_moves: list[Any] = [None] * len(wanted)
        old_found: list[Any] = [0] * len(wanted)
        raw_users: list[Any] = [None] * len(users)
        raw_backlogs: list[Any] = [0] * len(instances)
        for (side_at, user_at, instance_at), reply in zip(by_instance.values(), replies, strict=True):
            states, moves, found, addresses, lengths = reply
            for n, i in enumerate(side_at):
                flat_sides[i], raw_moves[i], old_found[i] = states[n], moves[n], found[n]
            for n, i in enumerate(user_at):
                raw_users[i] = addresses[n]
            for n, i in enumerate(instance_at):
                raw_backlogs[i] = lengths[n]
        raw_sides = [dict(zip(flat[::2], flat[1::2], strict=True)) for flat in flat_sides]
        if any(old_found):
            raw_sides = await self._adopt_legacy(keys, legacy, old_found, raw_sides)
        return StateSnapshot(
            sides={
                side: parse_state({text(k): text(v) for k, v in raw.items()})
                for side, raw in zip(wanted, raw_sides, strict=True)
            },
            user_emails={user: text(v) if v else None for user, v in zip(users, raw_users, strict=True)},
            backlogs={i: int(n) for i, n in zip(instances, raw_backlogs, strict=True)},
            moves={side: Pointer.decode(text(moved)) for side, moved in zip(wanted, raw_moves, strict=True) if moved},
        )

    async def _adopt_legacy(
        self, keys: list[str], legacy: list[str], found: list[int], raw_sides: list[Any]
    ) -> list[Any]:
        """The upgrade path to keyed-hash state keys, read old / write new: state found under its legacy name is
        moved to its current one and read from there. Costs one EXISTS per side until the legacy keys are gone
        (moved, or expired with the state TTL)."""
        moving = [i for i, exists in enumerate(found) if exists]
        async with self._redis.pipeline(transaction=False) as pipe:
            for i in moving:
                pipe.eval(_ADOPT.text, 2, legacy[i], keys[i])
                pipe.hgetall(keys[i])
            results = await pipe.execute()
        adopted = list(raw_sides)
        for n, i in enumerate(moving):
            adopted[i] = results[2 * n + 1]
        return adopted

    def transaction(self) -> RedisStateTransaction:
        return RedisStateTransaction(self, self._redis)

    async def record_written(self, command: SyncCommand) -> None:
        transaction = self.transaction()
        transaction.record_written(command)
        await transaction.execute()

    async def clear_pending(self, abandoned: AbandonedMarks) -> None:
        transaction = self.transaction()
        transaction.clear_pending(abandoned)
        await transaction.execute()

    def queue_record_written(self, call: ScriptCall, command: SyncCommand) -> None:
        """The one way a write is recorded: its script calls, queued through `call` — in a transaction, or on a
        pipeline shared with the writer's own records (`RedisIdempotencyStore.mark_done`)."""
        written = recorded_write(command)
        if written is None:
            return
        if written.moved_from is not None:
            self.queue_move(
                call, written.instance_id, written.system, written.moved_from, written.email, written.source_ts_ms
            )
        key = state_key(written.instance_id, written.system, written.email)
        self.queue_merge(call, key, written.digests, written.source_ts_ms, "written")

    def queue_move(
        self, call: ScriptCall, instance_id: str, system: System, old_email: str, new_email: str, moved_ms: int
    ) -> None:
        """The `_MOVE` script's call: the state, and a forward pointer kept as long as a recent write is (a late
        change naming the old address comes within seconds; a pointer kept longer would also catch someone else
        given the address later)."""
        keys = [
            state_key(instance_id, system, old_email),
            state_key(instance_id, system, new_email),
            moved_key(instance_id, system, old_email),
            moved_key(instance_id, system, new_email),
        ]
        pointer = Pointer(new_email, moved_ms).encode()
        call(_MOVE, keys, [pointer, max(1, self._recent_window_ms // 1000)])

    def queue_merge(
        self, call: ScriptCall, key: str, digests: Mapping[str, str], source_ts_ms: int, origin: Origin
    ) -> None:
        args = [source_ts_ms, origin, self._ttl_s, self._clock(), self._recent_window_ms, *_pairs(digests)]
        call(_MERGE, [key], args)

    async def load_scripts(self) -> None:
        """After NOSCRIPT (Redis restarted): the scripts `queue_record_written` calls by name, loaded again."""
        for script in (_MERGE, _MOVE):
            await self._redis.script_load(script.text)
