"""Auto-pipelining: Redis calls issued in the same event-loop tick go to Redis together, as one pipeline.

Under a backlog a service has hundreds of commands in hand, and their Redis steps fall due together (a batch write
answered resolves them all in one tick). Sent one by one they cost a round trip each — a socket write, a read and a
wake-up per call, the bulk of the CPU they take. `AutoPipeline.call` queues the caller's commands; once the loop has
run everything else that was ready (`tandem_shared.tick_batches`), one pipeline (not a transaction) carries all the
queued commands, and each caller gets back exactly its own replies.

Nothing changes for a caller but the cost: its commands run in its order, each Lua script as atomically as alone, and
a reply that is an error (NOSCRIPT, a script error) is raised to that caller only. When the pipeline fails as a
whole (connection lost) every caller of that flush gets the exception and may retry; the next call gets a new
pipeline, on a new connection if need be.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from tandem_shared.tick_batches import TickBatches

# Queues the caller's commands on the pipeline it is given.
Queue = Callable[[Pipeline], object]


class AutoPipeline:
    """Sends the calls made during one loop tick as one pipeline (at most `max_calls` per pipeline)."""

    def __init__(self, redis: Redis, *, max_calls: int = 512) -> None:
        if max_calls < 1:
            raise ValueError("max_calls must be at least 1")
        self._redis = redis
        self._calls: TickBatches[Queue, list[Any] | Exception] = TickBatches(
            self._send, name="redis-pipeline", stopped="the Redis pipeline was stopped", max_items=max_calls
        )

    @property
    def redis(self) -> Redis:
        return self._redis

    async def call(self, queue: Queue) -> list[Any]:
        """Runs the commands `queue` puts on the pipeline; returns their replies, in order. A reply that is an
        error is raised (the first one), as is a failure of the whole pipeline."""
        replies = await self._calls.submit(queue)
        if isinstance(replies, Exception):
            raise replies
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        return replies

    async def _send(self, queues: list[Queue]) -> list[list[Any] | Exception]:
        """Each call's replies, or the exception its own queueing raised."""
        pipe = self._redis.pipeline(transaction=False)
        counts: list[int | Exception] = []
        for queue in queues:
            before = len(pipe.command_stack)
            try:
                queue(pipe)
            except Exception as exc:  # a caller's own bug stays its own
                del pipe.command_stack[before:]
                counts.append(exc)
            else:
                counts.append(len(pipe.command_stack) - before)
        try:
            replies = await pipe.execute(raise_on_error=False) if pipe.command_stack else []
        except Exception as exc:  # the whole pipeline failed: every call it carried fails with it
            return [count if isinstance(count, Exception) else exc for count in counts]
        answers: list[list[Any] | Exception] = []
        at = 0
        for count in counts:
            if isinstance(count, Exception):
                answers.append(count)
            else:
                answers.append(list(replies[at : at + count]))
                at += count
        return answers

    async def aclose(self) -> None:
        """Waits for the pipelines on their way (their callers get their answers)."""
        await self._calls.aclose()
