"""Calls made within one event-loop tick, answered together.

Under a backlog hundreds of callers reach the same step in one tick (a batch answered resolves them all at once).
Answered one by one they cost a round trip each; `TickBatches` keeps the items submitted during a tick and, once the
loop has run everything else that was ready, hands them to one `answer` call (at most `max_items` a call), each
caller getting exactly its own answer. `redis.pipeline.AutoPipeline` sends a tick's Redis commands as one pipeline
with it, the writer's `side_reads.SideReads` reads a tick's sync states with one `load_many`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Answer = TypeVar("Answer")


class TickBatches(Generic[Item, Answer]):
    def __init__(
        self,
        answer: Callable[[list[Item]], Awaitable[Sequence[Answer]]],
        *,
        name: str,
        stopped: str,
        max_items: int | None = None,
    ) -> None:
        """`answer` gets a batch's items and returns their answers, in order; when it raises, every caller of that
        batch gets the exception (`stopped`, as a `ConnectionAbortedError`, when the batch's task is cancelled).
        `name` names the batches' tasks."""
        if max_items is not None and max_items < 1:
            raise ValueError("max_items must be at least 1")
        self._answer = answer
        self._name = name
        self._stopped = stopped
        self._max_items = max_items
        self._waiting: list[tuple[Item, asyncio.Future[Answer]]] = []
        self._batches: set[asyncio.Task[None]] = set()

    def submit(self, item: Item) -> asyncio.Future[Answer]:
        """The answer to `item`, to await; a caller cancelled before its batch goes leaves its item out."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Answer] = loop.create_future()
        if not self._waiting:
            loop.call_soon(self._flush)
        self._waiting.append((item, done))
        return done

    def _flush(self) -> None:
        waiting, self._waiting = self._waiting, []
        size = self._max_items or len(waiting)
        for start in range(0, len(waiting), size):
            task = asyncio.create_task(self._answer_batch(waiting[start : start + size]), name=self._name)
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)

    async def _answer_batch(self, batch: list[tuple[Item, asyncio.Future[Answer]]]) -> None:
        live = [(item, done) for item, done in batch if not done.done()]
        if not live:
            return
        try:
            answers = await self._answer([item for item, _ in live])
        except BaseException as exc:
            failure = exc if isinstance(exc, Exception) else ConnectionAbortedError(self._stopped)
            for _, done in live:
                if not done.done():
                    done.set_exception(failure)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, done), answer in zip(live, answers, strict=True):
            if not done.done():  # its caller may have been cancelled meanwhile
                done.set_result(answer)

    async def aclose(self) -> None:
        """Waits for the batches on their way (their callers get their answers)."""
        if self._waiting:
            self._flush()
        await asyncio.gather(*self._batches, return_exceptions=True)
