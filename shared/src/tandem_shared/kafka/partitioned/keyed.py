"""A strategy that handles several records of a partition at once, never two of one key, each key's in order.

- Up to `concurrency` records are in hand at once; a key (a contact) never has two, so each key's records are
  handled in offset order while other keys go ahead. The handler returns once the outcome is durable; only then may
  the record's offset be committed, and `poll()` reports the oldest record not yet done.
- A record that is not due yet (`due(record)` in the future) is held: nothing else starts meanwhile, the buffer
  fills and the consumer pauses the partition, while the other partitions go on.
- A handler that raises (a bug, an outage it did not absorb) is retried on the same record with a back-off; the
  record is never skipped.
- `key_interval_s`: a key's next handling starts no sooner than this after its previous one, and `fold` may take
  the key's records that arrived meanwhile into that one handling (a burst of edits costs two writes, not ten).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from aiokafka import TopicPartition

from tandem_shared.concurrency import Backoff
from tandem_shared.contracts import utcnow
from tandem_shared.kafka.partitioned.buffer import PartitionBuffer
from tandem_shared.kafka.partitioned.records import InboundRecord
from tandem_shared.logging import get_logger

log = get_logger("tandem.kafka.partitioned")

# handler(record, absorbed): handles `record` together with the later records `fold` took into its handling.
Handler = Callable[[InboundRecord, Sequence[InboundRecord]], Awaitable[object]]
# fold(record, waiting): which of the records waiting behind `record` are handled together with it.
Fold = Callable[[InboundRecord, Sequence[InboundRecord]], Sequence[InboundRecord]]
# due(record): the moment before which the record may not be handled, or None for now.
Due = Callable[[InboundRecord], datetime | None]

RETRY_BACKOFF_S = (0.5, 30.0)  # first and longest wait before a failed handler is called again
MAX_REMEMBERED_KEYS = 10_000  # beyond it, keys whose interval is over are forgotten


def _not_held(_record: InboundRecord) -> datetime | None:
    return None


def _no_progress() -> None:
    return None


class KeyedStrategy:
    """Handles one partition (see the module docstring); implements `ProcessingStrategy`."""

    def __init__(
        self,
        partition: TopicPartition,
        handler: Handler,
        *,
        progress: Callable[[], None] = _no_progress,
        concurrency: int = 1,
        key_interval_s: float = 0.0,
        fold: Fold | None = None,
        due: Due = _not_held,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = utcnow,
        retry_backoff_s: tuple[float, float] = RETRY_BACKOFF_S,
    ) -> None:
        self.partition = partition
        self._handler = handler
        self._progress = progress
        self._concurrency = max(1, concurrency)
        self._key_interval_s = key_interval_s
        self._fold = fold
        self._due = due
        self._clock = clock
        self._wall_clock = wall_clock
        self._retry_backoff_s = retry_backoff_s
        self._buffer = PartitionBuffer()
        self._last_start: dict[bytes | None, float] = {}
        self._in_flight: dict[int, asyncio.Task[None]] = {}  # offset → its handling
        self._busy_keys: set[bytes | None] = set()
        self._holding: int | None = None  # offset of the record taken in hand and waiting until it is due
        self._highest: int | None = None  # highest offset taken in hand (handled or folded into a handling)
        self._abandoned: int | None = None  # lowest offset whose handling was cancelled: never reported past
        self._finished: int | None = None  # next offset to commit
        self._wake_at: float | None = None  # when a key waiting out its interval becomes ready
        self._changed = asyncio.Event()
        self._closed = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"partition {partition.topic}-{partition.partition}")

    def submit(self, record: InboundRecord) -> None:
        if self._closed.is_set():
            raise RuntimeError(f"{record.where} submitted to a closed strategy")
        self._buffer.put(record)
        self._changed.set()

    def poll(self) -> int | None:
        if self._wake_at is not None and self._clock() >= self._wake_at:
            self._changed.set()
        return self._finished

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def close(self) -> None:
        self._closed.set()
        self._changed.set()

    async def join(self, grace_s: float | None = None) -> None:
        self.close()
        done, _ = await asyncio.wait([self._task], timeout=grace_s)
        if not done:
            log.warning(
                "in-flight records did not finish within the grace period",
                partition=f"{self.partition.topic}-{self.partition.partition}",
                count=len(self._in_flight),
            )
        await self.terminate()

    async def terminate(self) -> None:
        self.close()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def _ready_in(self, key: bytes | None) -> float:
        last = self._last_start.get(key)
        return 0.0 if last is None else last + self._key_interval_s - self._clock()

    async def _run(self) -> None:
        try:
            while not self._closed.is_set():
                record, soonest = self._buffer.first_startable(self._busy_keys, self._ready_in)
                if record is None or len(self._in_flight) >= self._concurrency:
                    await self._wait_for_change(soonest)
                    continue
                self._buffer.take([record])
                if self._key_interval_s > 0:
                    self._remember_start(record.key)
                self._holding = record.offset
                if not await self._held_until_due(record):
                    break  # closed while holding: the record stays unfinished, to be read again
                absorbed = self._foldable(record)
                if absorbed:
                    self._buffer.take(absorbed)
                taken = [record.offset, *(r.offset for r in absorbed)]
                self._highest = max(self._highest if self._highest is not None else -1, *taken)
                self._busy_keys.add(record.key)
                self._in_flight[record.offset] = asyncio.create_task(self._process(record, absorbed))
                self._holding = None
            if self._in_flight:
                await asyncio.gather(*self._in_flight.values())
        except asyncio.CancelledError:
            for task in self._in_flight.values():
                task.cancel()
            await asyncio.gather(*self._in_flight.values(), return_exceptions=True)
            raise

    async def _wait_for_change(self, soonest: float | None) -> None:
        self._changed.clear()
        self._wake_at = None if soonest is None else self._clock() + soonest
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=soonest)
        finally:
            self._wake_at = None

    async def _held_until_due(self, record: InboundRecord) -> bool:
        """Waits until the record is due; False if the strategy was closed first."""
        due = self._due(record)
        if due is None:
            return True
        wait = (due - self._wall_clock()).total_seconds()
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), timeout=wait)
        return not self._closed.is_set()

    def _remember_start(self, key: bytes | None) -> None:
        now = self._clock()
        if len(self._last_start) >= MAX_REMEMBERED_KEYS:
            self._last_start = {k: t for k, t in self._last_start.items() if now - t < self._key_interval_s}
        self._last_start[key] = now

    def _foldable(self, record: InboundRecord) -> Sequence[InboundRecord]:
        if self._fold is None or not self._buffer:
            return ()
        try:
            return self._fold(record, self._buffer.waiting())
        except Exception:  # folding is an optimisation: when it fails, each record is handled on its own
            log.exception("folding failed; records are handled one by one", where=record.where)
            return ()

    async def _process(self, record: InboundRecord, absorbed: Sequence[InboundRecord]) -> None:
        try:
            await self._handle(record, absorbed)
        except asyncio.CancelledError:
            self._abandoned = min(record.offset, self._abandoned if self._abandoned is not None else record.offset)
            raise
        finally:
            del self._in_flight[record.offset]
            self._busy_keys.discard(record.key)
            self._finished = self._next_to_commit()
            self._changed.set()
            self._progress()

    async def _handle(self, record: InboundRecord, absorbed: Sequence[InboundRecord]) -> None:
        backoff = Backoff(*self._retry_backoff_s, jitter=False)
        while True:
            try:
                await self._handler(record, absorbed)
                return
            except Exception:
                log.exception("handler failed; the record is retried, never skipped", where=record.where)
                await asyncio.sleep(backoff.next_delay())

    def _next_to_commit(self) -> int | None:
        """The oldest offset not done yet: everything below it was handled or folded into a handled record."""
        open_offsets = [*self._in_flight]
        if (waiting := self._buffer.first_offset()) is not None:
            open_offsets.append(waiting)
        if self._holding is not None:
            open_offsets.append(self._holding)
        if self._abandoned is not None:
            open_offsets.append(self._abandoned)
        if open_offsets:
            lowest = min(open_offsets)
            return lowest if self._finished is None else max(self._finished, lowest)
        return None if self._highest is None else self._highest + 1
