"""Reads of one side's sync state each, made in the same event-loop tick, answered by one `StateStore.load_many`.

Under a backlog every command is older than the stale-command bound, so each is checked against its target's state
before it is written (`source_check.SourceCheckedTarget`), and hundreds of them reach that check together (the
claims that precede it are answered in one pipeline, so in one tick). One read of its own each cost a Redis round
trip per command: a pipeline, a connection taken from the pool, a socket write, a read and a wake-up. Gathered per
tick they cost one round trip for all. Nothing changes for a caller but the cost: it gets the side it asked for, as
read after it asked; a failed read is raised to every caller of that read (as its own read would have raised).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from tandem_shared.contracts import System
from tandem_shared.redis.state import Side, StateStore
from tandem_shared.sync.rules import SideState


@dataclass(eq=False)
class _Read:
    side: Side
    done: asyncio.Future[SideState | None]


class SideReads:
    def __init__(self, state: StateStore) -> None:
        self._state = state
        self._waiting: list[_Read] = []
        self._loads: set[asyncio.Task[None]] = set()

    async def side(self, instance_id: str, system: System, email: str) -> SideState | None:
        """What Tandem knows `system` holds for `email` (None: nothing), read after this call was made."""
        loop = asyncio.get_running_loop()
        read = _Read((instance_id, system, email), loop.create_future())
        if not self._waiting:
            loop.call_soon(self._flush)
        self._waiting.append(read)
        return await read.done

    def _flush(self) -> None:
        waiting, self._waiting = self._waiting, []
        task = asyncio.create_task(self._load(waiting), name="writer-side-reads")
        self._loads.add(task)
        task.add_done_callback(self._loads.discard)

    async def _load(self, reads: list[_Read]) -> None:
        live = [r for r in reads if not r.done.done()]  # a caller cancelled before the flush reads nothing
        if not live:
            return
        try:
            snapshot = await self._state.load_many([r.side for r in live])
        except Exception as exc:
            for read in live:
                if not read.done.done():
                    read.done.set_exception(exc)
            return
        except BaseException:
            for read in live:
                if not read.done.done():
                    read.done.set_exception(ConnectionAbortedError("the state read was stopped"))
            raise
        for read in live:
            if not read.done.done():  # its caller may have been cancelled meanwhile
                read.done.set_result(snapshot.side(*read.side))
