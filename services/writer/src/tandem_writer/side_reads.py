"""Reads of one side's sync state each, made in the same event-loop tick, answered by one `StateStore.load_many`
(`tandem_shared.tick_batches`).

Under a backlog every command is older than the stale-command bound, so each is checked against its target's state
before it is written (`source_check.SourceCheckedTarget`), and hundreds of them reach that check together (the
claims that precede it are answered in one pipeline, so in one tick). One read of its own each cost a Redis round
trip per command: a pipeline, a connection taken from the pool, a socket write, a read and a wake-up. Gathered per
tick they cost one round trip for all. Nothing changes for a caller but the cost: it gets the side it asked for, as
read after it asked; a failed read is raised to every caller of that read (as its own read would have raised).
"""

from __future__ import annotations

from tandem_shared.contracts import System
from tandem_shared.redis.state import Side, StateStore
from tandem_shared.sync.rules import SideState
from tandem_shared.tick_batches import TickBatches


class SideReads:
    def __init__(self, state: StateStore) -> None:
        self._state = state
        self._reads: TickBatches[Side, SideState | None] = TickBatches(
            self._load, name="writer-side-reads", stopped="the state read was stopped"
        )

    async def side(self, instance_id: str, system: System, email: str) -> SideState | None:
        """What Tandem knows `system` holds for `email` (None: nothing), read after this call was made."""
        return await self._reads.submit((instance_id, system, email))

    async def _load(self, sides: list[Side]) -> list[SideState | None]:
        snapshot = await self._state.load_many(sides)
        return [snapshot.side(*side) for side in sides]
