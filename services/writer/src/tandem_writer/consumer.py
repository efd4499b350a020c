"""A Kafka consumer that processes each partition in order and the partitions side by side, and commits per
partition exactly the offsets it has finished — never a position it has merely fetched.

Why not FastStream's subscriber: its `ack()` commits the positions of every assigned partition, so with partitions
processed concurrently one partition's ack would commit another's unfinished records (lost on a crash).

- One worker task per assigned partition takes the partition's records in order and calls the handler; the handler
  returns once the outcome is durable, then the next offset becomes committable.
- A record with an `x-not-before` header in the future is held until it is due: its worker waits, the partition is
  paused once its buffer is full, and the poll loop keeps polling the other partitions (no long sleep in a poll,
  no broken `max_poll_interval_ms`).
- A handler that raises (a bug, an outage it did not absorb) is retried on the same record with a back-off; the
  record is never skipped.
- Rebalance and shutdown: a worker in the middle of a record may finish it within the grace period; workers that
  are only waiting are stopped at once; then the finished offsets are committed and the partition let go.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from tandem_shared.contracts import utcnow
from tandem_shared.logging import get_logger
from tandem_writer.delivery import InboundRecord
from tandem_writer.retry import not_before

log = get_logger("tandem.writer.consumer")

Handler = Callable[[InboundRecord], Awaitable[object]]


def inbound(record: ConsumerRecord[bytes, bytes]) -> InboundRecord:
    """aiokafka's ConsumerRecord → InboundRecord (header values decoded as UTF-8)."""
    return InboundRecord(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        headers={name: (value or b"").decode("utf-8", "replace") for name, value in (record.headers or ())},
        timestamp_ms=record.timestamp,
    )


class _PartitionWorker:
    def __init__(self, owner: PartitionedConsumer, tp: TopicPartition) -> None:
        self.tp = tp
        self.queue: asyncio.Queue[InboundRecord] = asyncio.Queue()
        self.busy = False
        self.draining = False
        self.finished: int | None = None  # next offset to commit
        self.committed: int | None = None
        self._owner = owner
        self.task = asyncio.create_task(self._run(), name=f"partition {tp.topic}-{tp.partition}")

    async def _run(self) -> None:
        while not self.draining:
            record = await self.queue.get()
            await self._owner._wait_until_due(record)
            self.busy = True
            try:
                await self._owner._handle(record)
            finally:
                self.busy = False
            self.finished = record.offset + 1
            self._owner._maybe_resume(self)


class PartitionedConsumer:
    def __init__(
        self,
        *,
        bootstrap_servers: str,
        group_id: str,
        topics: Sequence[str],
        group_instance_id: str | None = None,
        handler: Handler,
        client_id: str = "tandem-writer",
        max_buffered: int = 100,
        shutdown_grace_s: float = 35.0,
        max_poll_interval_ms: int = 300_000,
        session_timeout_ms: int = 10_000,
        clock: Callable[[], datetime] = utcnow,
        wait_exempt: Callable[[InboundRecord], bool] = lambda _record: False,
    ) -> None:
        self._topics = list(topics)
        self._wait_exempt = wait_exempt
        self._handler = handler
        self._max_buffered = max_buffered
        self._grace_s = shutdown_grace_s
        self._clock = clock
        self._workers: dict[TopicPartition, _PartitionWorker] = {}
        self._commit_lock = asyncio.Lock()
        self._poll_task: asyncio.Task[None] | None = None
        self._stopping = False
        # Between revocation and the new assignment a poll may still return records of revoked partitions; they
        # are dropped (the new owner, possibly this consumer again, reads them from the committed offset).
        self._rebalancing = False
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            group_id=group_id,
            group_instance_id=group_instance_id,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_interval_ms=max_poll_interval_ms,
            session_timeout_ms=session_timeout_ms,
            # A rebalance waits for in-flight records to finish (bounded by the grace period), not the session.
            rebalance_timeout_ms=max_poll_interval_ms,
        )

    @property
    def running(self) -> bool:
        return self._poll_task is not None and not self._poll_task.done()

    async def start(self) -> None:
        await self.consumer.start()
        self.consumer.subscribe(self._topics, listener=_Listener(self))
        self._poll_task = asyncio.create_task(self._poll(), name="writer-poll")

    async def stop(self) -> None:
        """Finish in-flight records (within the grace period), commit them, leave the group."""
        self._stopping = True
        if self._poll_task is not None:
            self._poll_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll_task
        await self._retire(list(self._workers))
        await self.consumer.stop()

    async def _poll(self) -> None:
        while not self._stopping:
            try:
                batches = await self.consumer.getmany(timeout_ms=500, max_records=500)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the poll loop must outlive any broker trouble
                log.warning("poll failed; retrying", error=str(exc) or type(exc).__name__)
                await asyncio.sleep(1.0)
                continue
            assigned = self.consumer.assignment()
            for tp, records in batches.items():
                if self._rebalancing or tp not in assigned:
                    continue
                worker = self._workers.get(tp)
                if worker is None:
                    worker = self._workers[tp] = _PartitionWorker(self, tp)
                for record in records:
                    worker.queue.put_nowait(inbound(record))
                if worker.queue.qsize() >= self._max_buffered:
                    self.consumer.pause(tp)
            await self._commit(list(self._workers.values()))

    def _maybe_resume(self, worker: _PartitionWorker) -> None:
        tp = worker.tp
        if worker.queue.qsize() <= self._max_buffered // 2 and tp in self.consumer.paused():
            self.consumer.resume(tp)

    async def _wait_until_due(self, record: InboundRecord) -> None:
        due = not_before(record.headers)
        if due is None or self._wait_exempt(record):
            return
        wait = (due - self._clock()).total_seconds()
        if wait > 0:
            await asyncio.sleep(wait)

    async def _handle(self, record: InboundRecord) -> None:
        delay = 0.5
        while True:
            try:
                await self._handler(record)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("handler failed; the record is retried, never skipped", where=record.where)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _commit(self, workers: list[_PartitionWorker]) -> None:
        async with self._commit_lock:
            assigned = self.consumer.assignment()
            pending = {
                w.tp: w.finished
                for w in workers
                if w.finished is not None and w.finished != w.committed and w.tp in assigned
            }
            if not pending:
                return
            try:
                await self.consumer.commit(pending)
            except KafkaError as exc:
                # Not lost: the records stay uncommitted and are delivered again (the writer is idempotent).
                log.warning("commit failed; will retry", error=str(exc), partitions=len(pending))
                return
            for w in workers:
                if w.tp in pending:
                    w.committed = pending[w.tp]

    async def _retire(self, partitions: list[TopicPartition]) -> None:
        workers = [self._workers.pop(tp) for tp in partitions if tp in self._workers]
        if not workers:
            return
        for worker in workers:
            worker.draining = True
            if not worker.busy:
                worker.task.cancel()
        in_flight = [w.task for w in workers if not w.task.done()]
        if in_flight:
            done, pending = await asyncio.wait(in_flight, timeout=self._grace_s)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("in-flight records did not finish within the grace period", count=len(pending))
        for worker in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker.task
        try:
            await asyncio.wait_for(self._commit(workers), timeout=self._grace_s)
        except TimeoutError:
            log.warning("final commit timed out; the finished records will be delivered again", count=len(workers))


class _Listener(ConsumerRebalanceListener):
    def __init__(self, owner: PartitionedConsumer) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._owner._rebalancing = True
        await self._owner._retire(list(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._owner._rebalancing = False
        log.info("partitions assigned", count=len(assigned))
