"""A Kafka consumer that processes each partition in order and the partitions side by side, and commits per
partition exactly the offsets its strategy has finished — never a position it has merely fetched.

Why not FastStream's subscriber: its `ack()` commits the positions of every assigned partition, so with partitions
processed concurrently one partition's ack would commit another's unfinished records (lost on a crash).

- Each assigned partition gets its own strategy (`StrategyFactory`), which is submitted the partition's records in
  order; the commit after each poll takes, per partition, the offset the strategy's `poll()` reports.
- A partition whose strategy has `max_buffered` records waiting is paused, so the poll loop keeps polling the
  others (no long sleep in a poll, no broken `max_poll_interval_ms`); it is resumed once half of them are taken.
- Rebalance and shutdown: the partition's strategy is closed and joined within the grace period (records in hand
  may finish), then what is finished is committed and the partition let go.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypedDict

from aiokafka import ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from tandem_shared.kafka.counting import received
from tandem_shared.kafka.partitioned.records import inbound
from tandem_shared.kafka.partitioned.strategy import ProcessingStrategy, StrategyFactory
from tandem_shared.logging import get_logger

log = get_logger("tandem.kafka.partitioned")

POLL_TIMEOUT_MS = 500
POLL_MAX_RECORDS = 500
POLL_FAILURE_PAUSE_S = 1.0


class ConsumerClient(Protocol):
    """The part of aiokafka's AIOKafkaConsumer this consumer uses (tests/fakes/kafka.py has an in-memory one)."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def subscribe(self, topics: Sequence[str], *, listener: ConsumerRebalanceListener) -> None: ...
    async def getmany(
        self, *, timeout_ms: int, max_records: int
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]: ...
    def assignment(self) -> set[TopicPartition]: ...
    def pause(self, *partitions: TopicPartition) -> None: ...
    def resume(self, *partitions: TopicPartition) -> None: ...
    def paused(self) -> set[TopicPartition]: ...
    async def commit(self, offsets: dict[TopicPartition, int]) -> None: ...


class ConsumerOptions(TypedDict):
    group_id: str
    group_instance_id: str | None
    enable_auto_commit: bool
    auto_offset_reset: str
    max_poll_interval_ms: int
    session_timeout_ms: int
    rebalance_timeout_ms: int


def consumer_options(
    *,
    group_id: str,
    group_instance_id: str | None = None,
    max_poll_interval_ms: int = 300_000,
    session_timeout_ms: int = 10_000,
) -> ConsumerOptions:
    """The AIOKafkaConsumer options a PartitionedConsumer relies on; the caller adds the connection settings."""
    return ConsumerOptions(
        group_id=group_id,
        group_instance_id=group_instance_id,
        enable_auto_commit=False,  # only finished offsets are committed, by the consumer itself
        auto_offset_reset="earliest",  # a new group reads everything rather than skip what came before it
        max_poll_interval_ms=max_poll_interval_ms,
        session_timeout_ms=session_timeout_ms,
        # A rebalance waits for in-flight records to finish (bounded by the grace period), not the session.
        rebalance_timeout_ms=max_poll_interval_ms,
    )


class PartitionedConsumer:
    def __init__(
        self,
        client: Callable[[], ConsumerClient],
        *,
        topics: Sequence[str],
        strategy: StrategyFactory,
        service: str,
        max_buffered: int = 100,
        shutdown_grace_s: float = 35.0,
    ) -> None:
        """`client` builds the group consumer when the consumer starts (aiokafka's needs the running event loop);
        build it with `consumer_options`. `service` labels the records it counts (`tandem_events_in_total`)."""
        self._make_client = client
        self._service = service
        self._client: ConsumerClient | None = None
        self._topics = list(topics)
        self._strategy = strategy
        self._max_buffered = max_buffered
        self._grace_s = shutdown_grace_s
        self._strategies: dict[TopicPartition, ProcessingStrategy] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._commit_lock = asyncio.Lock()
        self._poll_task: asyncio.Task[None] | None = None
        self._stopping = False
        # Between revocation and the new assignment a poll may still return records of revoked partitions; they
        # are dropped (the new owner, possibly this consumer again, reads them from the committed offset).
        self._rebalancing = False

    @property
    def consumer(self) -> ConsumerClient:
        if self._client is None:
            raise RuntimeError("the consumer has not been started")
        return self._client

    @property
    def running(self) -> bool:
        return self._poll_task is not None and not self._poll_task.done()

    async def start(self) -> None:
        client = self._client = self._make_client()
        await client.start()
        client.subscribe(self._topics, listener=_Rebalance(self._partitions_revoked, self._partitions_assigned))
        self._poll_task = asyncio.create_task(self._poll(client), name="partitioned-consumer poll")

    async def stop(self) -> None:
        """Finish in-flight records (within the grace period), commit them, leave the group."""
        self._stopping = True
        if self._poll_task is not None:
            self._poll_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll_task
        await self._retire(list(self._strategies))
        if self._client is not None:
            await self._client.stop()

    async def _poll(self, client: ConsumerClient) -> None:
        while not self._stopping:
            try:
                batches = await client.getmany(timeout_ms=POLL_TIMEOUT_MS, max_records=POLL_MAX_RECORDS)
            except Exception as exc:  # the poll loop must outlive any broker trouble
                log.warning("poll failed; retrying", error=str(exc) or type(exc).__name__)
                await asyncio.sleep(POLL_FAILURE_PAUSE_S)
                continue
            assigned = client.assignment()
            for tp, records in batches.items():
                if self._rebalancing or tp not in assigned:
                    continue
                strategy = self._strategies.get(tp)
                if strategy is None:
                    strategy = self._strategies[tp] = self._strategy(tp, functools.partial(self._resume_if_room, tp))
                received(self._service, records)
                for record in records:
                    strategy.submit(inbound(record))
                if strategy.buffered >= self._max_buffered:
                    client.pause(tp)
            await self._commit(list(self._strategies.items()))

    def _resume_if_room(self, tp: TopicPartition) -> None:
        strategy = self._strategies.get(tp)
        client = self._client
        if strategy is None or client is None:
            return
        if strategy.buffered <= self._max_buffered // 2 and tp in client.paused():
            client.resume(tp)

    async def _commit(self, strategies: list[tuple[TopicPartition, ProcessingStrategy]]) -> None:
        client = self.consumer
        async with self._commit_lock:
            assigned = client.assignment()
            pending: dict[TopicPartition, int] = {}
            for tp, strategy in strategies:
                finished = strategy.poll()
                if finished is not None and finished != self._committed.get(tp) and tp in assigned:
                    pending[tp] = finished
            if not pending:
                return
            try:
                await client.commit(pending)
            except KafkaError as exc:
                # Not lost: the records stay uncommitted and are delivered again (handlers must be idempotent).
                log.warning("commit failed; will retry", error=str(exc), partitions=len(pending))
                return
            self._committed.update(pending)

    async def _retire(self, partitions: list[TopicPartition]) -> None:
        retiring = [(tp, self._strategies.pop(tp)) for tp in partitions if tp in self._strategies]
        if not retiring:
            return
        for _, strategy in retiring:
            strategy.close()
        await asyncio.gather(*(strategy.join(self._grace_s) for _, strategy in retiring))
        try:
            await asyncio.wait_for(self._commit(retiring), timeout=self._grace_s)
        except TimeoutError:
            log.warning("final commit timed out; the finished records will be delivered again", count=len(retiring))
        for tp, _ in retiring:
            self._committed.pop(tp, None)

    async def _partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._rebalancing = True
        await self._retire(list(revoked))

    def _partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._rebalancing = False
        log.info("partitions assigned", count=len(assigned))


class _Rebalance(ConsumerRebalanceListener):
    def __init__(
        self,
        revoked: Callable[[set[TopicPartition]], Awaitable[None]],
        assigned: Callable[[set[TopicPartition]], None],
    ) -> None:
        self._revoked = revoked
        self._assigned = assigned

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._assigned(assigned)
