"""Reading whole topics without a consumer group: a follower that reads to the end before it serves and then
follows (compacted configuration, the console's copy of the trace), and one-off reads up to the end as of now."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from tandem_shared.kafka.admin import caught_up, partitions_of
from tandem_shared.kafka.connection import KafkaConnection
from tandem_shared.kafka.counting import received
from tandem_shared.logging import get_logger

log = get_logger("tandem.kafka.follower")

Record: TypeAlias = ConsumerRecord[bytes, bytes]
# Handles one poll's records (any partitions, each partition's in order). Raising makes the follower retry.
Handle = Callable[[list[Record]], Awaitable[None]]
# Where to start reading, per partition number; a partition not named is read from its beginning.
Positions = Callable[[], Awaitable[Mapping[int, int]]]


async def _from_the_beginning() -> Mapping[int, int]:
    return {}


class TopicFollower:
    """Every partition of one topic, assigned (no group): each process reads the whole topic for itself."""

    def __init__(
        self,
        connection: KafkaConnection,
        topic: str,
        *,
        positions: Positions = _from_the_beginning,
        max_records: int | None = None,
        **consumer_options: Any,
    ) -> None:
        self._connection = connection
        self._topic = topic
        self._positions = positions
        self._max_records = max_records
        self._options = consumer_options
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # "earliest", not the default "latest": should the fetcher resolve a position before seek_to_beginning
        # lands (a race in aiokafka), a partition must still be read from its start, never skipped.
        consumer = self._connection.consumer(enable_auto_commit=False, auto_offset_reset="earliest", **self._options)
        try:
            await consumer.start()
        except KafkaError as exc:
            # The first Kafka client every service starts: where wrong credentials must be named as such.
            await consumer.stop()
            raise await self._connection.explain(exc) from exc
        self._consumer = consumer
        self._partitions = await partitions_of(self._connection, self._topic)
        consumer.assign(self._partitions)
        await self.rewind()

    async def rewind(self) -> None:
        """Back to the start positions (after a batch that was not handled)."""
        consumer = self._running()
        positions = await self._positions()
        for tp in self._partitions:
            if tp.partition in positions:
                consumer.seek(tp, positions[tp.partition])
            else:
                await consumer.seek_to_beginning(tp)

    async def poll(self, handle: Handle, timeout_ms: int = 500) -> None:
        batches = await self._running().getmany(timeout_ms=timeout_ms, max_records=self._max_records)
        records = [record for partition in batches.values() for record in partition]
        received(self._connection.service, records)
        await handle(records)

    async def read_to_end(self, handle: Handle) -> None:
        """Reads up to the end offsets as they are now."""
        consumer = self._running()
        end = await consumer.end_offsets(self._partitions)
        while not await caught_up(consumer, end):
            await self.poll(handle)

    def follow(
        self,
        handle: Handle,
        *,
        rewind_on_error: bool = False,
        on_error: Callable[[Exception], None] | None = None,
        name: str | None = None,
    ) -> None:
        """Keeps polling in the background until `stop`; a failed poll is reported to `on_error`, logged and tried
        again a second later (from the start positions again when `rewind_on_error`, so nothing is skipped)."""
        task = self._follow(handle, rewind_on_error, on_error)
        self._task = asyncio.create_task(task, name=name or f"follow-{self._topic}")

    async def _follow(
        self, handle: Handle, rewind_on_error: bool, on_error: Callable[[Exception], None] | None
    ) -> None:
        rewind = False
        while True:
            try:
                if rewind:
                    await self.rewind()
                    rewind = False
                await self.poll(handle, timeout_ms=1000)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a broker or handler hiccup must not stop the following for good
                if on_error is not None:
                    on_error(exc)
                log.warning("topic poll failed; retrying", topic=self._topic, error=str(exc))
                rewind = rewind_on_error
                await asyncio.sleep(1.0)

    async def lag(self) -> int | None:
        """Records not read yet; None until every partition has answered a fetch."""
        consumer = self._running()
        lag = 0
        for tp in self._partitions:
            high = consumer.highwater(tp)
            if high is None:
                return None
            lag += max(0, high - await consumer.position(tp))
        return lag

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    def _running(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError(f"the follower of {self._topic} is not started")
        return self._consumer


async def read_records(
    connection: KafkaConnection,
    topics: Iterable[str],
    start: Mapping[TopicPartition, int] | None = None,
    keep: Callable[[Record], bool] = lambda _: True,
    *,
    since: datetime | None = None,
) -> list[Record]:
    """Records from `start` (default: the beginning, or the first record at or after `since`) up to the end as of
    now, without a consumer group."""
    partitions = [tp for topic in topics for tp in await partitions_of(connection, topic)]
    consumer = connection.consumer(enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        if since is not None:
            found = await consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in partitions})
            for tp, at in found.items():
                consumer.seek(tp, at.offset if at is not None else end[tp])
        for tp, offset in (start or {}).items():
            consumer.seek(tp, offset)
        records: list[Record] = []
        while not await caught_up(consumer, end):
            for tp, batch in (await consumer.getmany(*partitions, timeout_ms=500)).items():
                records.extend(r for r in batch if r.offset < end[tp] and keep(r))
        return records
    finally:
        await consumer.stop()
