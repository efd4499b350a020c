"""An in-memory `IdempotencyStore` (`tandem_shared.redis.idempotency`): the Redis store's three keys and their rules.

Per command an in-flight claim (`inflight_ttl_s`) that becomes an applied mark (`idempotency_ttl_s`); per contact a
lock taken with the claim and the source time of the newest change applied (`contact_marker_ttl_s`). Expiry follows
`clock`, which a test may move on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from tandem_shared.contracts import SyncCommand, utcnow
from tandem_shared.redis.idempotency import Claim, ClaimState
from tandem_shared.redis.state import StateStore

DAY_S = 24 * 60 * 60


@dataclass
class _Entry:
    value: str
    expires_at: datetime


class InMemoryIdempotencyStore:
    def __init__(
        self,
        *,
        inflight_ttl_s: float = 120.0,
        idempotency_ttl_s: int = 7 * DAY_S,
        contact_marker_ttl_s: int = 35 * DAY_S,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._inflight = timedelta(seconds=inflight_ttl_s)
        self._done = timedelta(seconds=idempotency_ttl_s)
        self._marker = timedelta(seconds=contact_marker_ttl_s)
        self._clock = clock
        self._applied: dict[str, _Entry] = {}  # idempotency key → "inflight:<token>" or "done"
        self._locks: dict[str, _Entry] = {}  # contact → token
        self._newest: dict[str, _Entry] = {}  # contact → source time of the newest change applied (isoformat)
        self._applied_at: dict[str, datetime] = {}

    @staticmethod
    def contact(command: SyncCommand) -> str:
        return f"{command.instance_id}|{command.target.value}|{command.identity.contact_key}"

    def _get(self, table: dict[str, _Entry], key: str) -> _Entry | None:
        entry = table.get(key)
        if entry is not None and entry.expires_at <= self._clock():
            del table[key]
            return None
        return entry

    def _wait_s(self, entry: _Entry) -> float:
        return max((entry.expires_at - self._clock()).total_seconds(), 0.0) or self._inflight.total_seconds()

    def _busy(self, entry: _Entry) -> Claim:
        wait_s = self._wait_s(entry)
        return Claim(ClaimState.BUSY, wait_s=wait_s, held_s=max(self._inflight.total_seconds() - wait_s, 0.0))

    async def claim(self, command: SyncCommand, token: str) -> Claim:
        mark = self._get(self._applied, command.idempotency_key)
        if mark is not None and mark.value == "done":
            return Claim(ClaimState.DONE, applied_at=self._applied_at[command.idempotency_key])
        if mark is not None:
            return self._busy(mark)
        lock = self._get(self._locks, self.contact(command))
        if lock is not None:
            return self._busy(lock)
        expires_at = self._clock() + self._inflight
        self._applied[command.idempotency_key] = _Entry(f"inflight:{token}", expires_at)
        self._locks[self.contact(command)] = _Entry(token, expires_at)
        newest = self._get(self._newest, self.contact(command))
        return Claim(ClaimState.CLAIMED, last_applied=datetime.fromisoformat(newest.value) if newest else None)

    async def mark_done(self, command: SyncCommand, token: str, *, state: StateStore | None = None) -> None:
        now = self._clock()
        self._applied[command.idempotency_key] = _Entry("done", now + self._done)
        self._applied_at[command.idempotency_key] = now
        newest = self._get(self._newest, self.contact(command))
        if newest is None or command.source_occurred_at > datetime.fromisoformat(newest.value):
            self._newest[self.contact(command)] = _Entry(command.source_occurred_at.isoformat(), now + self._marker)
        self._release_lock(command, token)
        if state is not None:
            await state.record_written(command)

    async def release(self, command: SyncCommand, token: str) -> None:
        mark = self._get(self._applied, command.idempotency_key)
        if mark is not None and mark.value == f"inflight:{token}":
            del self._applied[command.idempotency_key]
        self._release_lock(command, token)

    async def applied_at(self, command: SyncCommand) -> datetime | None:
        mark = self._get(self._applied, command.idempotency_key)
        return self._applied_at[command.idempotency_key] if mark is not None and mark.value == "done" else None

    async def close(self) -> None:
        return None

    def _release_lock(self, command: SyncCommand, token: str) -> None:
        lock = self._get(self._locks, self.contact(command))
        if lock is not None and lock.value == token:
            del self._locks[self.contact(command)]

    # What a test may look at, beyond the protocol.

    def in_flight(self, command: SyncCommand) -> bool:
        mark = self._get(self._applied, command.idempotency_key)
        return mark is not None and mark.value.startswith("inflight:")

    def contact_locked(self, command: SyncCommand) -> bool:
        return self._get(self._locks, self.contact(command)) is not None
