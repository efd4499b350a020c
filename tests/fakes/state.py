"""The sync-state store in memory: `StateStore`, `StateTransaction` and `HeldStore` of `tandem_shared.redis`.

The model is cosmicpython's `FakeUnitOfWork`: the same protocol as the Redis adapter, with its semantics kept where
a service depends on them — a side is kept as the hash `tandem_shared.sync.rules` describes (read back with its
`parse_state`), merges are last-writer-wins per field as the Lua script has it, a move renames a contact's state
and leaves a forward pointer, a transaction applies all of its changes or none, and held changes are parked only
with the rest of their transaction. `fail_on` makes chosen transactions fail, as Redis going away would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from tandem_shared.contracts import SyncCommand, System
from tandem_shared.redis.held import HeldEntry
from tandem_shared.redis.keys import moved_key, state_key, user_email_key
from tandem_shared.redis.state import Side
from tandem_shared.sync.rules import (
    DEFAULT_RECENT_WINDOW_MS,
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

Hash = dict[str, str]


class StateUnavailable(ConnectionError):
    """What a failed transaction raises (the Redis adapter raises redis' ConnectionError)."""


@dataclass
class InMemoryHeldStore:
    """Held changes per instance, in the order parked, and the release lease (no expiry: tests take it over)."""

    streams: dict[str, list[HeldEntry]] = field(default_factory=dict)
    leases: dict[str, str] = field(default_factory=dict)
    _next_id: int = 0

    def park(self, instance_id: str, fields: Mapping[str, str]) -> None:
        self._next_id += 1
        self.streams.setdefault(instance_id, []).append((f"{self._next_id}-0", dict(fields)))

    async def backlog(self, instance_id: str) -> int:
        return len(self.streams.get(instance_id, []))

    async def oldest(self, instance_id: str, count: int) -> list[HeldEntry]:
        return [(entry_id, dict(fields)) for entry_id, fields in self.streams.get(instance_id, [])[:count]]

    async def remove(self, instance_id: str, entry_id: str) -> None:
        self.streams[instance_id] = [e for e in self.streams.get(instance_id, []) if e[0] != entry_id]

    async def discard(self, instance_id: str) -> None:
        self.streams.pop(instance_id, None)

    async def acquire(self, instance_id: str, owner: str) -> bool:
        return self.leases.setdefault(instance_id, owner) == owner

    async def renew(self, instance_id: str, owner: str) -> bool:
        return self.leases.get(instance_id) == owner

    async def release(self, instance_id: str, owner: str) -> bool:
        if self.leases.get(instance_id) != owner:
            return False
        del self.leases[instance_id]
        return True


class InMemoryStateTransaction:
    """Changes collected as closures over the store and applied together by `execute` (or none of them)."""

    def __init__(self, store: InMemoryStateStore) -> None:
        self._store = store
        self._changes: list[Callable[[], None]] = []

    def __len__(self) -> int:
        return len(self._changes)

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
        self._changes.append(lambda: self._store.merge(key, dict(digests), source_ts_ms, origin))

    def move(self, instance_id: str, system: System, old_email: str, new_email: str, moved_ms: int) -> None:
        self._changes.append(lambda: self._store.move_contact(instance_id, system, old_email, new_email, moved_ms))

    def set_user_email(self, instance_id: str, user_id: str, email: str) -> None:
        def change() -> None:
            self._store.hashes.setdefault(user_email_key(instance_id), {})[user_id] = email
            state = self._store.hashes.get(state_key(instance_id, System.ACCESSPLANIT, email))
            if state is not None:
                state[USER_ID_FIELD] = user_id

        self._changes.append(change)

    def hold_at(self, instance_id: str, system: System, email: str, held_at: str) -> None:
        key = state_key(instance_id, system, email)
        self._changes.append(lambda: self._store.hashes.setdefault(key, {}).update({HELD_AT_FIELD: held_at}))

    def expect_write(self, command: SyncCommand) -> None:
        expected = expected_write(command, self._store.now_ms())
        if expected is None:
            return
        key = state_key(expected.instance_id, expected.system, expected.email)
        fields = dict(expected.fields)
        self._changes.append(lambda: self._store.hashes.setdefault(key, {}).update(fields))

    def record_written(self, command: SyncCommand) -> None:
        written = recorded_write(command)
        if written is None:
            return
        key = state_key(written.instance_id, written.system, written.email)
        if written.moved_from is not None:
            instance_id, system, old, new = written.instance_id, written.system, written.moved_from, written.email
            moved_ms = written.source_ts_ms
            self._changes.append(lambda: self._store.move_contact(instance_id, system, old, new, moved_ms))
        digests, ts = dict(written.digests), written.source_ts_ms
        self._changes.append(lambda: self._store.merge(key, digests, ts, "written"))

    def clear_pending(self, abandoned: AbandonedMarks) -> None:
        key = state_key(abandoned.instance_id, abandoned.system, abandoned.email)

        def change() -> None:
            state = self._store.hashes.get(key, {})
            for mark in abandoned.marks:
                if state.get(f"p:{mark}", "").partition("|")[2] == abandoned.command_id:
                    del state[f"p:{mark}"]

        self._changes.append(change)

    def park_held(self, instance_id: str, fields: Mapping[str, str]) -> None:
        parked = dict(fields)
        self._changes.append(lambda: self._store.held.park(instance_id, parked))

    async def execute(self) -> None:
        changes, self._changes = self._changes, []
        if not changes:
            return
        self._store.executes += 1
        if self._store.executes in self._store.fail_on:
            raise StateUnavailable("the state store is away")
        for change in changes:
            change()


class InMemoryStateStore:
    def __init__(self, *, now_ms: int = 0, recent_window_ms: int = DEFAULT_RECENT_WINDOW_MS) -> None:
        self.hashes: dict[str, Hash] = {}  # by the Redis key the adapter would use
        self.pointers: dict[str, Pointer] = {}  # forward pointers (`moved_key`) → the new address, when
        self.held = InMemoryHeldStore()
        self.clock_ms = now_ms
        self._recent_window_ms = recent_window_ms
        self.executes = 0  # transactions with something to apply, counted from 1
        self.fail_on: set[int] = set()  # which of them fail

    def now_ms(self) -> int:
        return self.clock_ms

    async def close(self) -> None:
        return None

    def raw(self, instance_id: str, system: System, email: str) -> Hash:
        """A side's stored hash, as a test inspects it."""
        return dict(self.hashes.get(state_key(instance_id, system, email), {}))

    async def load_many(
        self,
        sides: Iterable[Side],
        *,
        user_ids: Iterable[tuple[str, str]] = (),
        backlogs: Iterable[str] = (),
    ) -> StateSnapshot:
        return StateSnapshot(
            sides={side_key(*s): parse_state(self.hashes.get(state_key(*s), {})) for s in sides},
            user_emails={(i, u): self.hashes.get(user_email_key(i), {}).get(u) for i, u in user_ids},
            backlogs={i: len(self.held.streams.get(i, [])) for i in backlogs},
            moves={side_key(*s): self.pointers[moved_key(*s)] for s in sides if moved_key(*s) in self.pointers},
        )

    def transaction(self) -> InMemoryStateTransaction:
        return InMemoryStateTransaction(self)

    async def record_written(self, command: SyncCommand) -> None:
        transaction = self.transaction()
        transaction.record_written(command)
        await transaction.execute()

    async def clear_pending(self, abandoned: AbandonedMarks) -> None:
        transaction = self.transaction()
        transaction.clear_pending(abandoned)
        await transaction.execute()

    # -- what the Redis adapter's scripts do -----------------------------------------------------------------

    def merge(self, key: str, digests: Mapping[str, str], ts: int, origin: Origin) -> None:
        """Last writer wins per field; a write by Tandem is also remembered on its own (the `_MERGE` script)."""
        state = self.hashes.setdefault(key, {})
        now = self.clock_ms
        if origin == "written":
            for name in [n for n, v in state.items() if n.startswith("r:")]:
                if int(state[name].rsplit("|", 1)[1]) <= now - self._recent_window_ms:
                    del state[name]
            for name in [n for n, v in state.items() if n.startswith("p:")]:
                if int(state[name].partition("|")[0]) <= now - self._recent_window_ms:
                    del state[name]
        changed = False
        for name, digest in digests.items():
            current = state.get(f"f:{name}")
            take = True
            if current is not None:
                current_digest, current_ts, _ = current.split("|", 2)
                take = current_digest != digest and int(current_ts) <= ts
            if take:
                state[f"f:{name}"] = f"{digest}|{ts}|{origin}"
                changed = True
            if origin == "written":
                state[f"r:{name}|{digest}"] = f"{ts}|{now}"
                state.pop(f"p:{name}|{digest}", None)
        if origin == "written" or changed or "_last" not in state:
            state["_last"] = f"{origin}|{ts}"

    def move_contact(
        self, instance_id: str, system: System, old_email: str, new_email: str, moved_ms: int | None = None
    ) -> None:
        """The `_MOVE` script: the state moves (merged, per field the later value, with any already at the new
        address); a forward pointer at the old address (the fake keeps it: tests set the clock, not TTLs), none at
        the new one."""
        old, new = state_key(instance_id, system, old_email), state_key(instance_id, system, new_email)
        if old == new:
            return
        self.pointers[moved_key(instance_id, system, old_email)] = Pointer(new_email, moved_ms)
        self.pointers.pop(moved_key(instance_id, system, new_email), None)
        moving = self.hashes.pop(old, None)
        if moving is None:
            return
        there = self.hashes.setdefault(new, {})
        for name, value in moving.items():
            current = there.get(name)
            if current is None or (name.startswith("f:") and _field_ts(value) > _field_ts(current)):
                there[name] = value


def _field_ts(stored: str) -> int:
    return int(stored.split("|", 2)[1])
