"""Ingest's ports in memory: event claims (the duplicate check), and the poller's cursors, leases and user pages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tandem_ingest.dedupe import Claim
from tandem_ingest.domain.cursor import Cursor, Position, record_position
from tandem_shared.contracts import ErrorInfo, InstanceConfig
from tandem_shared.redis.deferred import Deferral
from tandem_shared.vendors.accessplanit.client import AccessplanitError


@dataclass
class InMemoryClaims:
    """`EventClaims` as Redis keeps them: pending while a publish is in flight, done once it is stored."""

    states: dict[tuple[str, str], Claim] = field(default_factory=dict)

    async def claim(self, instance_id: str, event_id: str) -> Claim:
        state = self.states.get((instance_id, event_id))
        if state is None:
            self.states[(instance_id, event_id)] = Claim.IN_FLIGHT
            return Claim.NEW
        return state

    async def confirm(self, instance_id: str, event_id: str) -> None:
        self.states[(instance_id, event_id)] = Claim.DONE

    async def release(self, instance_id: str, event_id: str) -> None:
        self.states.pop((instance_id, event_id), None)


class BusyClaims(InMemoryClaims):
    """Every change is being stored right now by another delivery (its claim is pending)."""

    async def claim(self, instance_id: str, event_id: str) -> Claim:
        return Claim.IN_FLIGHT


@dataclass
class InMemoryCursors:
    cursors: dict[str, Cursor] = field(default_factory=dict)

    async def load(self, instance_id: str) -> Cursor | None:
        return self.cursors.get(instance_id)

    async def save(self, instance_id: str, cursor: Cursor) -> None:
        self.cursors[instance_id] = cursor


@dataclass
class InMemoryLeases:
    """The poller's per-instance leases; replicas share one `owners` dict as they would share Redis."""

    owners: dict[str, object] = field(default_factory=dict)

    def replica(self) -> ReplicaLocks:
        return ReplicaLocks(self)


class ReplicaLocks:
    def __init__(self, leases: InMemoryLeases) -> None:
        self._owners = leases.owners

    async def hold(self, instance_id: str) -> bool:
        return self._owners.setdefault(instance_id, self) is self

    async def release_all(self) -> None:
        for instance_id in [i for i, owner in self._owners.items() if owner is self]:
            del self._owners[instance_id]


@dataclass
class ListedUsers:
    """`ChangedUsers` over a list of user records, served in (DateUpdated, ID) order as accessplanit pages them;
    `failure` makes every read fail as the API would."""

    users: list[dict[str, Any]] = field(default_factory=list)
    failure: ErrorInfo | None = None
    pages_read: int = 0

    async def newest(self, instance: InstanceConfig) -> Position:
        self._fail()
        positions = [p for p in map(record_position, self.users) if p is not None]
        return max(positions, key=Position.sort_key, default=Position(None))

    async def page(self, instance: InstanceConfig, after: Position, size: int) -> list[dict[str, Any]]:
        self._fail()
        self.pages_read += 1
        placed = [(p, u) for u in self.users if (p := record_position(u)) is not None]
        later = sorted((pu for pu in placed if _after(pu[0], after)), key=lambda pu: pu[0].sort_key())
        return [user for _, user in later[:size]]

    def _fail(self) -> None:
        if self.failure is not None:
            raise AccessplanitError(self.failure)


def _after(position: Position, start: Position) -> bool:
    """As `domain.cursor.page_filter` asks accessplanit: strictly after, or from the instant on without an id."""
    if start.date_updated is None:
        return True
    if start.user_id is None:
        return position.sort_key()[0] >= start.sort_key()[0]
    return position.sort_key() > start.sort_key()


@dataclass
class InMemoryDeferredUsers:
    """`DeferredUsers` as the Redis sorted set keeps them: one arrival per user, moved only forward."""

    arrivals: dict[tuple[str, str], int] = field(default_factory=dict)

    async def defer(self, instance_id: str, user_id: str, arrived_ms: int) -> None:
        key = (instance_id, user_id)
        self.arrivals[key] = max(arrived_ms, self.arrivals.get(key, arrived_ms))

    async def due(self, instance_id: str, arrived_before_ms: int, limit: int) -> list[Deferral]:
        found = sorted(
            (ms, user)
            for (instance, user), ms in self.arrivals.items()
            if instance == instance_id and ms <= arrived_before_ms
        )
        return [Deferral(user, ms) for ms, user in found[:limit]]

    async def settle(self, instance_id: str, user_ids: Sequence[str], read_at_ms: int) -> int:
        settled = [u for u in user_ids if self.arrivals.get((instance_id, u), read_at_ms + 1) <= read_at_ms]
        for user in settled:
            del self.arrivals[(instance_id, user)]
        return len(settled)

    def waiting(self, instance_id: str) -> set[str]:
        return {user for (instance, user) in self.arrivals if instance == instance_id}


@dataclass
class Allowance:
    """`RereadAllowance` with `left` reads to give per instance."""

    left: int = 0

    async def allows(self, instance_id: str) -> bool:
        if self.left > 0:
            self.left -= 1
            return True
        return False


@dataclass
class RecordReader:
    """`UserReader` over a dict of records (a deleted user is absent); counts the reads."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    reads: list[str] = field(default_factory=list)

    async def get_user(self, instance: InstanceConfig, user_id: str) -> dict[str, Any] | None:
        self.reads.append(user_id)
        return self.records.get(user_id)
