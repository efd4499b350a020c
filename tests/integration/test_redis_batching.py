"""AutoPipeline against a real Redis: the calls of one loop tick share a round trip, and each caller gets its own
replies or its own error — a connection lost fails only the callers of the pipeline that was on it."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from tandem_shared.redis.pipeline import AutoPipeline

pytestmark = pytest.mark.integration


@pytest.fixture
def prefix() -> str:
    return f"batching-{uuid.uuid4().hex[:8]}"


async def reads_processed(redis: Redis) -> int:
    return int((await redis.info("stats"))["total_reads_processed"])


async def test_each_caller_gets_its_own_replies_in_its_own_order(redis: Redis, prefix: str) -> None:
    batching = AutoPipeline(redis)

    def queue(i: int) -> Callable[[Pipeline], None]:
        def put(pipe: Pipeline) -> None:
            pipe.set(f"{prefix}:{i}", f"v{i}")
            pipe.incrby(f"{prefix}:n", i)
            pipe.get(f"{prefix}:{i}")

        return put

    replies = await asyncio.gather(*(batching.call(queue(i)) for i in range(1, 51)))

    assert [r[0] for r in replies] == [True] * 50
    assert [r[2] for r in replies] == [f"v{i}" for i in range(1, 51)]
    # Each caller's INCRBY ran in call order: its reply is the running total up to it.
    assert [r[1] for r in replies] == [i * (i + 1) // 2 for i in range(1, 51)]


async def test_the_calls_of_one_tick_go_to_redis_in_one_round_trip(redis: Redis, prefix: str) -> None:
    counter = Redis(connection_pool=redis.connection_pool)
    batching = AutoPipeline(redis)
    await batching.call(lambda pipe: pipe.ping())  # the pool has a connection: none is opened in between
    before = await reads_processed(counter)

    await asyncio.gather(*(batching.call(lambda pipe, i=i: pipe.set(f"{prefix}:{i}", i)) for i in range(100)))

    # The INFO calls themselves are reads too: one before (counted by the second INFO), one pipeline, one INFO.
    assert await reads_processed(counter) - before == 2
    assert await redis.get(f"{prefix}:99") == "99"


async def test_calls_beyond_max_calls_go_in_further_pipelines_and_all_are_answered(redis: Redis, prefix: str) -> None:
    counter = Redis(connection_pool=redis.connection_pool)
    batching = AutoPipeline(redis, max_calls=10)
    await batching.call(lambda pipe: pipe.ping())
    # Three pipelines at once: the pool has a connection for each, so none is opened (and counted) below.
    await asyncio.gather(*(batching.call(lambda pipe: pipe.ping()) for _ in range(30)))
    before = await reads_processed(counter)

    replies = await asyncio.gather(
        *(batching.call(lambda pipe, i=i: pipe.incr(f"{prefix}:{i % 3}")) for i in range(25))
    )

    assert await reads_processed(counter) - before == 3 + 1
    assert sorted(r[0] for r in replies) == sorted([*range(1, 10), *range(1, 9), *range(1, 9)])


async def test_an_error_reply_is_raised_to_its_caller_only(redis: Redis, prefix: str) -> None:
    batching = AutoPipeline(redis)
    await redis.set(f"{prefix}:text", "not a number")

    results = await asyncio.gather(
        batching.call(lambda pipe: pipe.set(f"{prefix}:a", "1")),
        batching.call(lambda pipe: (pipe.incr(f"{prefix}:text"), pipe.set(f"{prefix}:b", "2"))),
        batching.call(lambda pipe: pipe.evalsha("0" * 40, 0)),
        batching.call(lambda pipe: pipe.get(f"{prefix}:a")),
        return_exceptions=True,
    )

    assert results[0] == [True]
    assert isinstance(results[1], ResponseError) and "not an integer" in str(results[1])
    assert isinstance(results[2], NoScriptError)
    assert results[3] == ["1"]
    # The failing caller's other command still ran, as it would in its own pipeline.
    assert await redis.get(f"{prefix}:b") == "2"


async def test_a_caller_whose_queueing_raises_gets_its_exception_and_the_others_their_replies(
    redis: Redis, prefix: str
) -> None:
    batching = AutoPipeline(redis)

    def broken(pipe: Pipeline) -> None:
        pipe.set(f"{prefix}:half", "queued before the bug")
        raise ValueError("bug in the caller")

    results = await asyncio.gather(
        batching.call(lambda pipe: pipe.set(f"{prefix}:a", "1")),
        batching.call(broken),
        batching.call(lambda pipe: pipe.get(f"{prefix}:a")),
        return_exceptions=True,
    )

    assert results[0] == [True]
    assert isinstance(results[1], ValueError)
    assert results[2] == ["1"]
    assert await redis.get(f"{prefix}:half") is None  # the broken caller's half-queued command was not sent


async def test_a_caller_cancelled_before_the_flush_sends_nothing_and_the_others_are_answered(
    redis: Redis, prefix: str
) -> None:
    batching = AutoPipeline(redis)
    cancelled = asyncio.create_task(batching.call(lambda pipe: pipe.set(f"{prefix}:cancelled", "1")))
    kept = asyncio.create_task(batching.call(lambda pipe: pipe.set(f"{prefix}:kept", "1")))
    await asyncio.sleep(0)  # both calls queued, the flush not yet run
    cancelled.cancel()

    assert await kept == [True]
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert await redis.get(f"{prefix}:cancelled") is None


class CuttingProxy:
    """A TCP proxy in front of Redis that drops a client connection as soon as it carries `poison`."""

    def __init__(self, upstream: tuple[str, int], poison: bytes) -> None:
        self.upstream = upstream
        self.poison = poison
        self.cutting = True
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, check: bool) -> None:
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                while data := await src.read(65536):
                    if check and self.cutting and self.poison in data:
                        break
                    dst.write(data)
                    await dst.drain()
            for w in (writer, up_writer):
                w.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def test_a_lost_connection_fails_only_that_pipelines_callers_and_their_retry_succeeds(
    redis_url: str, redis: Redis, prefix: str
) -> None:
    parts = urlsplit(redis_url)
    if parts.scheme == "rediss":
        pytest.skip("the proxy cuts the connection that carries a command it reads: under TLS it reads none")
    proxy = CuttingProxy((parts.hostname or "127.0.0.1", parts.port or 6379), poison=f"{prefix}:poison".encode())
    port = await proxy.start()
    # No retries inside redis-py: the caller (the writer's `_durably`) decides when to try again.
    client = Redis(host="127.0.0.1", port=port, decode_responses=True, retry=Retry(NoBackoff(), 0))
    batching = AutoPipeline(client, max_calls=2)
    try:
        results = await asyncio.gather(
            batching.call(lambda pipe: pipe.set(f"{prefix}:a", "1")),
            batching.call(lambda pipe: pipe.set(f"{prefix}:poison", "1")),
            batching.call(lambda pipe: pipe.set(f"{prefix}:b", "1")),
            batching.call(lambda pipe: pipe.set(f"{prefix}:c", "1")),
            return_exceptions=True,
        )
        # Two pipelines of two calls: the one carrying the poison lost its connection, the other was answered.
        assert isinstance(results[0], RedisConnectionError)
        assert isinstance(results[1], RedisConnectionError)
        assert results[2:] == [[True], [True]]
        assert await redis.get(f"{prefix}:c") == "1"

        proxy.cutting = False
        retried = await asyncio.gather(
            batching.call(lambda pipe: pipe.set(f"{prefix}:a", "1")),
            batching.call(lambda pipe: pipe.set(f"{prefix}:poison", "1")),
        )
        assert retried == [[True], [True]]
        assert await redis.mget(f"{prefix}:a", f"{prefix}:poison") == ["1", "1"]
    finally:
        await batching.aclose()
        await client.aclose()
        await proxy.stop()
