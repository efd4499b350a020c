"""Reads `tandem.trace` into the store, in batches, resuming from the offsets the store keeps.

No consumer group: every console (and every rebuild) reads the whole topic for itself, since the store is a
complete copy of it, not a share of the work.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from tandem_console.domain import end_to_end_seconds
from tandem_console.store import Added, TraceStore
from tandem_shared.contracts import TraceRecord, utcnow
from tandem_shared.contracts.topics import TRACE
from tandem_shared.kafka import caught_up, partitions_of
from tandem_shared.logging import get_logger
from tandem_shared.metrics import CONSUMER_LAG, END_TO_END_LATENCY, ERRORS, EVENTS_IN, TRACE_RECORDS_STORED

log = get_logger("tandem.console.consumer")

SERVICE = "console"


class TraceConsumer:
    def __init__(
        self,
        bootstrap_servers: str,
        store: TraceStore,
        *,
        batch_size: int = 500,
        retention: timedelta | None = None,
        topic: str = TRACE,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._store = store
        self._batch_size = batch_size
        self._retention = retention
        self._topic = topic
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []
        self._task: asyncio.Task[None] | None = None
        self.started_at = utcnow()
        self.lag: int | None = None

    async def start(self) -> None:
        # "earliest", not the default "latest": should the fetcher resolve a position before seek_to_beginning
        # lands (a race in aiokafka), a partition must still be read from its start, never skipped.
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        await consumer.start()
        self._consumer = consumer
        self._partitions = await partitions_of(self._bootstrap, self._topic)
        consumer.assign(self._partitions)
        stored = await asyncio.to_thread(self._store.offsets, self._topic)
        for tp in self._partitions:
            if tp.partition in stored:
                consumer.seek(tp, stored[tp.partition])
            else:
                await consumer.seek_to_beginning(tp)

    async def run_forever(self) -> None:
        """Follow the topic until cancelled; a batch that was not stored is read again, never skipped."""
        rewind = False
        while True:
            try:
                if rewind:
                    await self._rewind()
                    rewind = False
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a broker or database hiccup: go back to what the store has and go on
                ERRORS.labels(service=SERVICE, kind=type(exc).__name__).inc()
                log.warning("trace batch not stored; reading it again", error=str(exc))
                rewind = True
                await asyncio.sleep(1.0)

    def follow(self) -> None:
        self._task = asyncio.create_task(self.run_forever(), name="trace-consumer")

    async def catch_up(self) -> int:
        """Read until the end offsets seen now; returns the number of records stored (for `rebuild`)."""
        assert self._consumer is not None
        end = await self._consumer.end_offsets(self._partitions)
        stored = 0
        while not await caught_up(self._consumer, end):
            stored += len((await self.poll_once()).records)
        return stored

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    async def _rewind(self) -> None:
        assert self._consumer is not None
        stored = await asyncio.to_thread(self._store.offsets, self._topic)
        for tp in self._partitions:
            if tp.partition in stored:
                self._consumer.seek(tp, stored[tp.partition])
            else:
                await self._consumer.seek_to_beginning(tp)

    async def poll_once(self, timeout_ms: int = 500) -> Added:
        assert self._consumer is not None
        batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=self._batch_size)
        records: list[TraceRecord] = []
        next_offsets: dict[int, int] = {}
        cutoff = utcnow() - self._retention if self._retention is not None else None
        for tp, messages in batches.items():
            for message in messages:
                next_offsets[tp.partition] = message.offset + 1
                EVENTS_IN.labels(service=SERVICE, topic=self._topic).inc()
                try:
                    record = TraceRecord.model_validate_json(message.value or b"")
                except ValidationError as exc:
                    # Not ours to fix and nothing to retry: count it, say where it is, and keep reading.
                    ERRORS.labels(service=SERVICE, kind="invalid_trace_record").inc()
                    log.error(
                        "invalid trace record skipped",
                        partition=tp.partition,
                        offset=message.offset,
                        error=str(exc.errors()[:3]),
                    )
                    continue
                if cutoff is not None and record.finished_at < cutoff:
                    continue
                records.append(record)
        added = Added([], {})
        if next_offsets:
            added = await asyncio.to_thread(self._store.add, records, topic=self._topic, next_offsets=next_offsets)
            self._observe(added)
        await self._report_lag()
        return added

    def _observe(self, added: Added) -> None:
        TRACE_RECORDS_STORED.inc(len(added.records))
        for record in added.records:
            seconds = end_to_end_seconds(added.executions.get(record.execution_id, []), record)
            # Executions from before this process started were measured by whoever read them live.
            if seconds is not None and record.finished_at >= self.started_at - timedelta(minutes=5):
                END_TO_END_LATENCY.labels(flow=record.flow.value if record.flow else "unknown").observe(seconds)

    async def _report_lag(self) -> None:
        assert self._consumer is not None
        lag = 0
        for tp in self._partitions:
            high = self._consumer.highwater(tp)
            if high is None:  # no fetch answered yet on this partition
                return
            lag += max(0, high - await self._consumer.position(tp))
        self.lag = lag
        CONSUMER_LAG.labels(service=SERVICE, topic=self._topic).set(lag)
