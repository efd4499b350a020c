"""Auto-pipelining: Redis calls issued in the same event-loop tick go to Redis together, as one pipeline.

Under a backlog a service has hundreds of commands in hand, and their Redis steps fall due together (a batch write
answered resolves them all in one tick). Sent one by one they cost a round trip each — a socket write, a read and a
wake-up per call, the bulk of the CPU they take. `AutoPipeline.call` queues the caller's commands; once the loop has
run everything else that was ready, one pipeline (not a transaction) carries all the queued commands, and each caller
gets back exactly its own replies.

Nothing changes for a caller but the cost: its commands run in its order, each Lua script as atomically as alone, and
a reply that is an error (NOSCRIPT, a script error) is raised to that caller only. When the pipeline fails as a
whole (connection lost) every caller of that flush gets the exception and may retry; the next call gets a new
pipeline, on a new connection if need be.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

# Queues the caller's commands on the pipeline it is given.
Queue = Callable[[Pipeline], object]


@dataclass(eq=False)
class _Call:
    queue: Queue
    done: asyncio.Future[list[Any]]


class AutoPipeline:
    """Sends the calls made during one loop tick as one pipeline (at most `max_calls` per pipeline)."""

    def __init__(self, redis: Redis, *, max_calls: int = 512) -> None:
        if max_calls < 1:
            raise ValueError("max_calls must be at least 1")
        self._redis = redis
        self._max_calls = max_calls
        self._waiting: list[_Call] = []
        self._flushes: set[asyncio.Task[None]] = set()

    @property
    def redis(self) -> Redis:
        return self._redis

    async def call(self, queue: Queue) -> list[Any]:
        """Runs the commands `queue` puts on the pipeline; returns their replies, in order. A reply that is an
        error is raised (the first one), as is a failure of the whole pipeline."""
        loop = asyncio.get_running_loop()
        call = _Call(queue, loop.create_future())
        if not self._waiting:
            loop.call_soon(self._flush)
        self._waiting.append(call)
        replies = await call.done
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        return replies

    def _flush(self) -> None:
        waiting, self._waiting = self._waiting, []
        for start in range(0, len(waiting), self._max_calls):
            task = asyncio.create_task(self._send(waiting[start : start + self._max_calls]), name="redis-pipeline")
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)

    async def _send(self, calls: Sequence[_Call]) -> None:
        live = [c for c in calls if not c.done.done()]  # a caller cancelled before the flush sends nothing
        if not live:
            return
        pipe = self._redis.pipeline(transaction=False)
        counts: list[int] = []
        queued: list[_Call] = []
        for call in live:
            before = len(pipe.command_stack)
            try:
                call.queue(pipe)
            except Exception as exc:  # a caller's own bug stays its own
                del pipe.command_stack[before:]
                call.done.set_exception(exc)
                continue
            counts.append(len(pipe.command_stack) - before)
            queued.append(call)
        if not queued:
            return
        try:
            replies = await pipe.execute(raise_on_error=False) if pipe.command_stack else []
        except BaseException as exc:
            failure = exc if isinstance(exc, Exception) else ConnectionAbortedError("the Redis pipeline was stopped")
            for call in queued:
                if not call.done.done():
                    call.done.set_exception(failure)
            if not isinstance(exc, Exception):
                raise
            return
        at = 0
        for call, count in zip(queued, counts, strict=True):
            if not call.done.done():  # its caller may have been cancelled meanwhile
                call.done.set_result(list(replies[at : at + count]))
            at += count

    async def aclose(self) -> None:
        """Waits for the pipelines on their way (their callers get their answers)."""
        if self._waiting:
            self._flush()
        await asyncio.gather(*self._flushes, return_exceptions=True)
