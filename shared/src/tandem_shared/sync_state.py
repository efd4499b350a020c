"""What Tandem knows each side holds for each contact: the Redis key scheme, shared by the mapper and the writer.

The mapper decides from this whether a change carries anything new (change detection), whether it is Tandem's own
write coming back (echo suppression) and which of two concurrent changes is later (conflicts). The writer records
every successful write with one call, `SyncStateStore.record_written(command)`.

Keys (`{…}` is a Redis Cluster hash tag: all keys of one instance live on one slot):

    tandem:{<instance>}:state:<system>:<contact>  HASH
        f:<field>          "<digest>|<source ts ms>|<seen|written>"  the value the side holds, as a digest
        r:<field>|<digest> "<source ts ms>|<recorded ms>"            a recent write by Tandem (echoes, late ones too)
        _last              "<seen|written>|<source ts ms>"           who changed the contact last
        <contact> = subscriber_hash(email): Mailchimp's member id, so no address appears in a key.
        <field> = the name in the instance's mappings: a merge tag, an accessplanit field or 'custom:<name>'.
    tandem:{<instance>}:ap-user-email             HASH    accessplanit user id → the last address seen for it
    tandem:{<instance>}:held                      STREAM  changes held while the instance is paused
    tandem:{<instance>}:held:lock                 STRING  the mapper replica releasing held changes

Values are stored as digests, never as values; the addresses in `ap-user-email` are what email-change detection
needs (the old address identifies the contact on the other side).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from tandem_shared.contracts import (
    Operation,
    SyncCommand,
    System,
    canonical_json,
    email_key,
    fingerprint,
    subscriber_hash,
)
from tandem_shared.contracts.instances import CUSTOM_FIELD_PREFIX

Origin = Literal["seen", "written"]

DEFAULT_TTL_S = 180 * 24 * 3600
# How long a write by Tandem is remembered individually: long enough for the target's webhook to come back.
DEFAULT_RECENT_WINDOW_MS = 15 * 60 * 1000


def _prefix(instance_id: str) -> str:
    return f"tandem:{{{instance_id}}}"


def state_key(instance_id: str, system: System, email: str) -> str:
    return f"{_prefix(instance_id)}:state:{system.value}:{subscriber_hash(email)}"


def user_email_key(instance_id: str) -> str:
    return f"{_prefix(instance_id)}:ap-user-email"


def held_key(instance_id: str) -> str:
    return f"{_prefix(instance_id)}:held"


def held_lock_key(instance_id: str) -> str:
    return f"{_prefix(instance_id)}:held:lock"


def text(value: bytes | str) -> str:
    """Redis answers str with decode_responses, bytes without; the keys and values here are always text."""
    return value.decode("utf-8") if isinstance(value, bytes) else value


def ts_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def canonical_value(value: Any) -> str:
    """One text form per value, so values that mean the same compare equal (None and "" alike, 4 and "4")."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, Mapping):
        parts = {str(k): canonical_value(v) for k, v in value.items()}
        return canonical_json({k: v for k, v in parts.items() if v}).decode()
    if isinstance(value, list | tuple):
        return canonical_json([canonical_value(v) for v in value]).decode()
    return str(value).strip()


def field_digest(value: Any) -> str:
    return hashlib.sha256(canonical_value(value).encode("utf-8")).hexdigest()[:16]


EMPTY_DIGEST = field_digest(None)


def payload_email(target: System, payload: Mapping[str, Any]) -> str | None:
    value = payload.get("email_address" if target is System.MAILCHIMP else "Email")
    return value.strip() if isinstance(value, str) and value.strip() else None


def payload_content(target: System, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The mapped fields a payload writes, by their mapping names; the address (the identity) is left out."""
    if target is System.MAILCHIMP:
        merges = payload.get("merge_fields") or {}
        return {str(tag).upper(): value for tag, value in merges.items()}
    content = {k: v for k, v in payload.items() if k not in ("Email", "CustomFields")}
    for name, value in (payload.get("CustomFields") or {}).items():
        content[f"{CUSTOM_FIELD_PREFIX}{name}"] = value
    return content


def content_fingerprint(target: System, payload: Mapping[str, Any]) -> str:
    email = payload_email(target, payload)
    content = {f: canonical_value(v) for f, v in payload_content(target, payload).items()}
    return fingerprint({"email": email_key(email) if email else None, "fields": content})


@dataclass(frozen=True)
class FieldState:
    digest: str
    ts_ms: int
    origin: Origin


@dataclass(frozen=True)
class RecentWrite:
    source_ts_ms: int  # when the change Tandem wrote happened in its source system
    recorded_ms: int  # when the write was done (the writer's clock)


@dataclass(frozen=True)
class SideState:
    """What one side is known to hold for one contact."""

    fields: Mapping[str, FieldState]
    last_origin: Origin
    last_ts_ms: int
    # "field|digest" → a recent write by Tandem of that value.
    recent_writes: Mapping[str, RecentWrite] = field(default_factory=dict)

    def written_recently(self, name: str, digest: str) -> RecentWrite | None:
        return self.recent_writes.get(f"{name}|{digest}")


def parse_state(raw: Mapping[str, str]) -> SideState | None:
    if not raw:
        return None
    fields: dict[str, FieldState] = {}
    recent: dict[str, RecentWrite] = {}
    last_origin: Origin = "seen"
    last_ts = 0
    for name, value in raw.items():
        if name.startswith("f:"):
            digest, ts, origin = value.split("|", 2)
            fields[name[2:]] = FieldState(digest, int(ts), "written" if origin == "written" else "seen")
        elif name.startswith("r:"):
            source_ts, _, recorded = value.partition("|")
            recent[name[2:]] = RecentWrite(int(source_ts), int(recorded or 0))
        elif name == "_last":
            origin, _, ts = value.partition("|")
            last_origin = "written" if origin == "written" else "seen"
            last_ts = int(ts or 0)
    return SideState(fields, last_origin, last_ts, recent)


# Last-writer-wins per field: a value replaces the stored one only when it differs and is not older. A write by
# Tandem is also remembered on its own for a while, so a late echo of an earlier write is still recognised.
_MERGE = """
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
    redis.call('HSET', key, 'f:' .. name, digest .. '|' .. ARGV[1] .. '|' .. origin)
    changed = true
  end
  if origin == 'written' then
    redis.call('HSET', key, 'r:' .. name .. '|' .. digest, ARGV[1] .. '|' .. ARGV[4])
  end
end
if origin == 'written' or changed or redis.call('HEXISTS', key, '_last') == 0 then
  redis.call('HSET', key, '_last', origin .. '|' .. ARGV[1])
end
redis.call('EXPIRE', key, tonumber(ARGV[3]))
if changed then return 1 end
return 0
"""

_MOVE = """
if KEYS[1] == KEYS[2] or redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('RENAME', KEYS[1], KEYS[2])
return 1
"""

# What Redis names each script by (SHA-1 of its text), for EVALSHA in a pipeline.
_SHAS = {script: hashlib.sha1(script.encode("utf-8")).hexdigest() for script in (_MERGE, _MOVE)}


@dataclass(frozen=True)
class StateSnapshot:
    """What `SyncStateStore.load_many` read in one round trip; asking for anything it did not read is a bug."""

    sides: Mapping[str, SideState | None]  # by state_key
    user_emails: Mapping[tuple[str, str], str | None]  # (instance, accessplanit user id) → address
    backlogs: Mapping[str, int]  # instance → held changes waiting

    def side(self, instance_id: str, system: System, email: str) -> SideState | None:
        return self.sides[state_key(instance_id, system, email)]

    def user_email(self, instance_id: str, user_id: str) -> str | None:
        return self.user_emails[(instance_id, user_id)]

    def backlog(self, instance_id: str) -> int:
        return self.backlogs[instance_id]

    def extend(self, other: StateSnapshot) -> StateSnapshot:
        return StateSnapshot(
            {**self.sides, **other.sides},
            {**self.user_emails, **other.user_emails},
            {**self.backlogs, **other.backlogs},
        )


class StateWrites:
    """State changes queued for one round trip and run as one transaction (MULTI/EXEC): a connection lost before
    EXEC applies none of them.

    The Lua scripts are loaded inside the same transaction before their first use: after a Redis restart an
    EVALSHA would otherwise fail alone at EXEC while the commands around it apply.
    """

    def __init__(self, store: SyncStateStore) -> None:
        self._store = store
        self._pipe: Pipeline = store.redis.pipeline(transaction=True)
        self._loaded: set[str] = set()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, queue: Callable[[Pipeline], object]) -> None:
        """A write to another key of this scheme (e.g. parking a held change) in the same transaction."""
        queue(self._pipe)
        self._count += 1

    def _script(self, script: str, keys: list[str], args: list[str | int]) -> None:
        sha = _SHAS[script]
        if sha not in self._loaded:
            self._pipe.script_load(script)
            self._loaded.add(sha)
        self._pipe.evalsha(sha, len(keys), *keys, *args)
        self._count += 1

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
        key = state_key(instance_id, system, email)
        self._script(_MERGE, [key], self._store.merge_args(digests, source_ts_ms, origin))

    def move(self, instance_id: str, system: System, old_email: str, new_email: str) -> None:
        keys = [state_key(instance_id, system, old_email), state_key(instance_id, system, new_email)]
        self._script(_MOVE, keys, [])

    def set_user_email(self, instance_id: str, user_id: str, email: str) -> None:
        self._pipe.hset(user_email_key(instance_id), user_id, email)
        self._count += 1

    def expect_write(self, command: SyncCommand) -> None:
        """As `SyncStateStore.expect_write`, queued."""
        noted = self._store.expected(command)
        if noted is None:
            return
        key, fields = noted
        self._pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
        self._pipe.expire(key, self._store.ttl_s)
        self._count += 1

    async def execute(self) -> None:
        try:
            if self._count:
                await self._pipe.execute()
        finally:
            await self._pipe.reset()


class SyncStateStore:
    def __init__(
        self,
        redis: Redis,
        *,
        ttl_s: int = DEFAULT_TTL_S,
        recent_window_ms: int = DEFAULT_RECENT_WINDOW_MS,
        clock: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._redis = redis
        self._ttl_s = ttl_s
        self._recent_window_ms = recent_window_ms
        self._clock = clock
        self._merge = redis.register_script(_MERGE)
        self._move = redis.register_script(_MOVE)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> SyncStateStore:
        return cls(Redis.from_url(url, decode_responses=True), **kwargs)

    @property
    def redis(self) -> Redis:
        return self._redis

    async def close(self) -> None:
        await self._redis.aclose()

    async def load(self, instance_id: str, system: System, email: str) -> SideState | None:
        raw = await self._redis.hgetall(state_key(instance_id, system, email))
        return parse_state({text(k): text(v) for k, v in raw.items()})

    async def load_many(
        self,
        sides: Iterable[tuple[str, System, str]],
        *,
        user_ids: Iterable[tuple[str, str]] = (),
        backlogs: Iterable[str] = (),
    ) -> StateSnapshot:
        """Several contacts' state, accessplanit users' last addresses and held-change backlogs in one round trip.

        `sides` are (instance, system, email); `user_ids` (instance, accessplanit user id); `backlogs` instance ids.
        """
        keys = list(dict.fromkeys(state_key(*side) for side in sides))
        users = list(dict.fromkeys(user_ids))
        instances = list(dict.fromkeys(backlogs))
        if not keys and not users and not instances:
            return StateSnapshot({}, {}, {})
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(key)
            for instance_id, user_id in users:
                pipe.hget(user_email_key(instance_id), user_id)
            for instance_id in instances:
                pipe.xlen(held_key(instance_id))
            results = await pipe.execute()
        raw_sides, rest = results[: len(keys)], results[len(keys) :]
        raw_users, raw_backlogs = rest[: len(users)], rest[len(users) :]
        return StateSnapshot(
            sides={
                key: parse_state({text(k): text(v) for k, v in raw.items()})
                for key, raw in zip(keys, raw_sides, strict=True)
            },
            user_emails={user: text(v) if v else None for user, v in zip(users, raw_users, strict=True)},
            backlogs={i: int(n) for i, n in zip(instances, raw_backlogs, strict=True)},
        )

    def writes(self) -> StateWrites:
        """Queue state changes and apply them in one round trip with `await writes.execute()`."""
        return StateWrites(self)

    @property
    def ttl_s(self) -> int:
        return self._ttl_s

    def merge_args(self, digests: Mapping[str, str], source_ts_ms: int, origin: Origin) -> list[str | int]:
        args: list[str | int] = [source_ts_ms, origin, self._ttl_s, self._clock(), self._recent_window_ms]
        for name, digest in digests.items():
            args.extend((name, digest))
        return args

    async def merge(
        self,
        instance_id: str,
        system: System,
        email: str,
        digests: Mapping[str, str],
        *,
        source_ts_ms: int,
        origin: Origin,
    ) -> None:
        args = self.merge_args(digests, source_ts_ms, origin)
        await self._merge(keys=[state_key(instance_id, system, email)], args=args)

    async def move(self, instance_id: str, system: System, old_email: str, new_email: str) -> None:
        """The contact's address changed: what is known about it moves to the new address."""
        keys = [state_key(instance_id, system, old_email), state_key(instance_id, system, new_email)]
        await self._move(keys=keys, args=[])

    async def user_email(self, instance_id: str, user_id: str) -> str | None:
        value = await self._redis.hget(user_email_key(instance_id), user_id)
        return text(value) if value else None

    async def set_user_email(self, instance_id: str, user_id: str, email: str) -> None:
        await self._redis.hset(user_email_key(instance_id), user_id, email)

    async def expect_write(self, command: SyncCommand) -> None:
        """The mapper's note, before a command leaves it, that Tandem is about to write these values.

        The target's webhook for the write can reach the mapper before the writer has recorded the write; with this
        note the echo is recognised all the same. What the target holds changes only with `record_written`.
        """
        writes = self.writes()
        writes.expect_write(command)
        await writes.execute()

    def expected(self, command: SyncCommand) -> tuple[str, dict[str, str]] | None:
        """The key and the fields `expect_write` notes for a command (None: nothing to note)."""
        email = payload_email(command.target, command.payload) or command.identity.email
        if email is None:
            return None
        content = payload_content(command.target, command.payload)
        if not content:
            return None
        noted = f"{ts_ms(command.source_occurred_at)}|{self._clock()}"
        fields = {f"r:{name}|{field_digest(value)}": noted for name, value in content.items()}
        return state_key(command.instance_id, command.target, email), fields

    async def record_written(self, command: SyncCommand) -> None:
        """The writer's success hook: the target now holds the command's payload."""
        email = payload_email(command.target, command.payload) or command.identity.email
        if email is None:
            return
        old = command.identity.old_email
        if command.operation is Operation.CHANGE_EMAIL and old and email_key(old) != email_key(email):
            await self.move(command.instance_id, command.target, old, email)
        digests = {name: field_digest(v) for name, v in payload_content(command.target, command.payload).items()}
        await self.merge(
            command.instance_id,
            command.target,
            email,
            digests,
            source_ts_ms=ts_ms(command.source_occurred_at),
            origin="written",
        )

    def record_written_into(self, pipe: Pipeline, command: SyncCommand) -> None:
        """`record_written` queued on the caller's pipeline, so it shares one round trip with the caller's own
        commands. Sent as EVALSHA: when Redis answers NOSCRIPT (it restarted), `load_scripts` and execute again."""
        written = self._written(command)
        if written is None:
            return
        move, merge = written
        if move is not None:
            pipe.evalsha(self._move.sha, 2, *move)
        pipe.evalsha(self._merge.sha, 1, merge[0], *merge[1])

    async def load_scripts(self) -> None:
        for script in (self._merge, self._move):
            await self._redis.script_load(script.script)

    def _written(self, command: SyncCommand) -> tuple[tuple[str, str] | None, tuple[str, list[str | int]]] | None:
        """(the keys of an address move or None, the merge's key and arguments) that record a write."""
        email = payload_email(command.target, command.payload) or command.identity.email
        if email is None:
            return None
        old = command.identity.old_email
        move = None
        if command.operation is Operation.CHANGE_EMAIL and old and email_key(old) != email_key(email):
            move = (
                state_key(command.instance_id, command.target, old),
                state_key(command.instance_id, command.target, email),
            )
        digests = {name: field_digest(v) for name, v in payload_content(command.target, command.payload).items()}
        args: list[str | int] = [
            ts_ms(command.source_occurred_at),
            "written",
            self._ttl_s,
            self._clock(),
            self._recent_window_ms,
        ]
        for name, digest in digests.items():
            args.extend((name, digest))
        return move, (state_key(command.instance_id, command.target, email), args)
