"""A Kafka consumer that processes each partition in order and the partitions side by side, and commits per
partition exactly the offsets it has finished — never a position it has merely fetched.

Why not FastStream's subscriber: its `ack()` commits the positions of every assigned partition, so with partitions
processed concurrently one partition's ack would commit another's unfinished records (lost on a crash).

- One worker task per assigned partition takes the partition's records in order and calls the handler; the handler
  returns once the outcome is durable, then the next offset becomes committable. A worker may have several records
  in hand (`concurrency`), never two with the same key (one contact's), so each contact's records are handled in
  order; the committable offset is the oldest record not yet done.
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
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from tandem_shared.contracts import utcnow
from tandem_shared.logging import get_logger
from tandem_writer.delivery import InboundRecord
from tandem_writer.retry import not_before

log = get_logger("tandem.writer.consumer")

Handler = Callable[..., Awaitable[object]]  # handler(record) or handler(record, absorbed)
# Which records queued behind the one about to be handled fold into its handling (tandem_writer.coalescing).
Coalescer = Callable[[InboundRecord, Sequence[InboundRecord]], Sequence[InboundRecord]]


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


class _Pending:
    """A partition's fetched records in offset order; unlike asyncio.Queue, the waiting ones can be looked at
    and taken out (a contact whose write is in flight waits while other contacts go ahead; coalescing takes a
    contact's later upserts into the write of its first)."""

    def __init__(self) -> None:
        self._records: deque[InboundRecord] = deque()

    def put_nowait(self, record: InboundRecord) -> None:
        self._records.append(record)

    def qsize(self) -> int:
        return len(self._records)

    def waiting(self) -> list[InboundRecord]:
        return list(self._records)

    def take(self, records: Sequence[InboundRecord]) -> None:
        if len(records) == 1 and self._records and self._records[0].offset == records[0].offset:
            # The common case under a backlog (the oldest record starts): no rebuild of the whole buffer.
            self._records.popleft()
            return
        offsets = {r.offset for r in records}
        self._records = deque(r for r in self._records if r.offset not in offsets)

    def first_offset(self) -> int | None:
        return self._records[0].offset if self._records else None

    def first_startable(
        self, busy_keys: set[bytes | None], ready_at: Callable[[bytes | None], float]
    ) -> tuple[InboundRecord | None, float | None]:
        """The oldest record whose contact has nothing in flight and is ready (`ready_at(key)` <= 0 means now),
        so never one overtaking its own contact; else None and the soonest a waiting contact becomes ready."""
        blocked = set(busy_keys)
        soonest: float | None = None
        for record in self._records:
            if record.key in blocked:
                continue
            wait = ready_at(record.key)
            if wait <= 0:
                return record, None
            soonest = wait if soonest is None else min(soonest, wait)
            blocked.add(record.key)
        return None, soonest


class _PartitionWorker:
    """Handles one partition: up to `concurrency` records at once, never two of one contact (key) at once and
    each contact's in offset order; commits only below the oldest record not yet done."""

    def __init__(
        self,
        owner: PartitionedConsumer,
        tp: TopicPartition,
        concurrency: int = 1,
        contact_interval_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tp = tp
        self.queue = _Pending()
        self.concurrency = max(1, concurrency)
        # A contact's next write starts no sooner than this after its previous one; what arrives for it meanwhile
        # waits and is folded into that one next write (a burst of edits costs two vendor writes, not ten).
        self.contact_interval_s = contact_interval_s
        self._clock = clock
        self._last_start: dict[bytes | None, float] = {}
        self.draining = False
        self.finished: int | None = None  # next offset to commit
        self.committed: int | None = None
        self.in_flight: dict[int, asyncio.Task[None]] = {}  # offset → its handling
        self._busy_keys: set[bytes | None] = set()
        self._highest: int | None = None  # highest offset taken in hand (handled or folded into a write)
        self._abandoned: int | None = None  # lowest offset whose handling was cancelled: never committed past
        self._changed = asyncio.Event()
        self._owner = owner
        self.task = asyncio.create_task(self._run(), name=f"partition {tp.topic}-{tp.partition}")

    @property
    def busy(self) -> bool:
        return bool(self.in_flight)

    def arrived(self, record: InboundRecord) -> None:
        self.queue.put_nowait(record)
        self._changed.set()

    def drain(self) -> None:
        """Start nothing new; what is in flight finishes (the caller bounds how long it waits)."""
        self.draining = True
        self._changed.set()

    def poke(self) -> None:
        """Look again now (a test's clock moved)."""
        self._changed.set()

    def _ready_in(self, key: bytes | None) -> float:
        last = self._last_start.get(key)
        return 0.0 if last is None else last + self.contact_interval_s - self._clock()

    async def _run(self) -> None:
        try:
            while not self.draining:
                record, soonest = self.queue.first_startable(self._busy_keys, self._ready_in)
                if record is None or len(self.in_flight) >= self.concurrency:
                    self._changed.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), timeout=soonest)
                    continue
                self.queue.take([record])
                if self.contact_interval_s > 0:
                    self._remember_start(record.key)
                await self._owner._wait_until_due(record)
                absorbed = self._owner._absorbable(record, self.queue.waiting())
                if absorbed:
                    self.queue.take(absorbed)
                taken = [record.offset, *(r.offset for r in absorbed)]
                self._highest = max(self._highest if self._highest is not None else -1, *taken)
                self._busy_keys.add(record.key)
                self.in_flight[record.offset] = asyncio.create_task(self._process(record, absorbed))
            if self.in_flight:
                await asyncio.gather(*self.in_flight.values())
        except asyncio.CancelledError:
            for task in self.in_flight.values():
                task.cancel()
            await asyncio.gather(*self.in_flight.values(), return_exceptions=True)
            raise

    def _remember_start(self, key: bytes | None) -> None:
        now = self._clock()
        if len(self._last_start) >= 10_000:
            self._last_start = {k: t for k, t in self._last_start.items() if now - t < self.contact_interval_s}
        self._last_start[key] = now

    async def _process(self, record: InboundRecord, absorbed: Sequence[InboundRecord]) -> None:
        try:
            await self._owner._handle(record, absorbed)
        except asyncio.CancelledError:
            self._abandoned = min(record.offset, self._abandoned if self._abandoned is not None else record.offset)
            raise
        finally:
            del self.in_flight[record.offset]
            self._busy_keys.discard(record.key)
            self.finished = self._next_to_commit()
            self._changed.set()
            self._owner._maybe_resume(self)

    def _next_to_commit(self) -> int | None:
        """The oldest offset not done yet: everything below it was handled or folded into a handled write."""
        open_offsets = [*self.in_flight]
        if (waiting := self.queue.first_offset()) is not None:
            open_offsets.append(waiting)
        if self._abandoned is not None:
            open_offsets.append(self._abandoned)
        if open_offsets:
            lowest = min(open_offsets)
            return lowest if self.finished is None else max(self.finished, lowest)
        return None if self._highest is None else self._highest + 1


class PartitionedConsumer:
    def __init__(
        self,
        *,
        bootstrap_servers: str,
        group_id: str,
        topics: Sequence[str],
        group_instance_id: str | None = None,
        handler: Handler,
        coalescer: Coalescer | None = None,
        client_id: str = "tandem-writer",
        max_buffered: int = 100,
        shutdown_grace_s: float = 35.0,
        max_poll_interval_ms: int = 300_000,
        session_timeout_ms: int = 10_000,
        clock: Callable[[], datetime] = utcnow,
        wait_exempt: Callable[[InboundRecord], bool] = lambda _record: False,
        concurrency: Callable[[TopicPartition], int] = lambda _tp: 1,
        contact_interval_s: Callable[[TopicPartition], float] = lambda _tp: 0.0,
    ) -> None:
        self._topics = list(topics)
        self._wait_exempt = wait_exempt
        self._concurrency = concurrency
        self._contact_interval = contact_interval_s
        self._handler = handler
        self._coalescer = coalescer
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
                    worker = self._workers[tp] = _PartitionWorker(
                        self, tp, self._concurrency(tp), self._contact_interval(tp)
                    )
                for record in records:
                    worker.arrived(inbound(record))
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

    def _absorbable(self, record: InboundRecord, waiting: Sequence[InboundRecord]) -> Sequence[InboundRecord]:
        if self._coalescer is None or not waiting:
            return ()
        try:
            return self._coalescer(record, waiting)
        except Exception:  # coalescing is an optimisation: when it fails, each record is written on its own
            log.exception("coalescing failed; records are written one by one", where=record.where)
            return ()

    async def _handle(self, record: InboundRecord, absorbed: Sequence[InboundRecord] = ()) -> None:
        delay = 0.5
        while True:
            try:
                if absorbed:
                    await self._handler(record, absorbed)
                else:
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
            worker.drain()
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
