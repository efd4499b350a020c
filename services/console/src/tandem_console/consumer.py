"""Reads `tandem.trace` into the store, in batches, resuming from the offsets the store keeps.

No consumer group: every console (and every rebuild) reads the whole topic for itself, since the store is a
complete copy of it, not a share of the work. Records of stage `audit` (operator actions) go to the audit log, not
to the executions.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from pydantic import ValidationError

from tandem_console.audit import AuditEntry, AuditLog
from tandem_console.domain import end_to_end_seconds
from tandem_console.store import Added, TraceStore
from tandem_shared.contracts import AuditRecord, Stage, TraceRecord, utcnow
from tandem_shared.contracts.topics import TRACE
from tandem_shared.kafka import KafkaConnection, TopicFollower
from tandem_shared.kafka.follower import Record
from tandem_shared.logging import get_logger
from tandem_shared.metrics import CONSUMER_LAG, END_TO_END_LATENCY, ERRORS, TRACE_RECORDS_STORED

log = get_logger("tandem.console.consumer")

SERVICE = "console"


class TraceConsumer:
    def __init__(
        self,
        connection: KafkaConnection,
        store: TraceStore,
        *,
        batch_size: int = 500,
        retention: timedelta | None = None,
        topic: str = TRACE,
    ) -> None:
        self._store = store
        self._audit = AuditLog(store.engine)
        self._retention = retention
        self._topic = topic
        # Resumes from the offsets the store keeps with the records; a batch that was not stored is read again.
        self._follower = TopicFollower(connection, topic, positions=self._stored_offsets, max_records=batch_size)
        self.started_at = utcnow()
        self.lag: int | None = None
        self._stored = 0

    async def _stored_offsets(self) -> dict[int, int]:
        return await asyncio.to_thread(self._store.offsets, self._topic)

    async def start(self) -> None:
        await self._follower.start()

    def follow(self) -> None:
        """Follow the topic until stopped; a batch that was not stored is read again, never skipped."""
        self._follower.follow(self._add, rewind_on_error=True, on_error=_count_error, name="trace-consumer")

    async def catch_up(self) -> int:
        """Read until the end offsets seen now; returns the number of records stored (for `rebuild`)."""
        before = self._stored
        await self._follower.read_to_end(self._add)
        return self._stored - before

    async def stop(self) -> None:
        await self._follower.stop()

    async def _add(self, messages: list[Record]) -> None:
        records: list[TraceRecord] = []
        audits: list[AuditEntry] = []
        next_offsets: dict[int, int] = {}
        cutoff = utcnow() - self._retention if self._retention is not None else None
        for message in messages:
            next_offsets[message.partition] = message.offset + 1
            try:
                record = TraceRecord.model_validate_json(message.value or b"")
            except ValidationError as exc:
                # Not ours to fix and nothing to retry: count it, say where it is, and keep reading.
                ERRORS.labels(service=SERVICE, kind="invalid_trace_record").inc()
                log.error(
                    "invalid trace record skipped",
                    partition=message.partition,
                    offset=message.offset,
                    error=str(exc.errors()[:3]),
                )
                continue
            if record.stage is Stage.AUDIT:
                # Kept as long as the audit log is, whatever the executions' retention.
                audit = AuditRecord.from_data_out(record.output.data_out)
                if audit is not None:
                    audits.append(AuditEntry.of(audit))
                continue
            if cutoff is not None and record.finished_at < cutoff:
                continue
            records.append(record)
        for entry in audits:  # before the offsets move on (in `add`): a batch read again finds them stored
            await asyncio.to_thread(self._audit.record, entry)
        if next_offsets:
            added = await asyncio.to_thread(self._store.add, records, topic=self._topic, next_offsets=next_offsets)
            self._stored += len(added.records)
            self._observe(added)
        self.lag = await self._follower.lag()
        if self.lag is not None:
            CONSUMER_LAG.labels(service=SERVICE, topic=self._topic).set(self.lag)

    def _observe(self, added: Added) -> None:
        TRACE_RECORDS_STORED.inc(len(added.records))
        for record in added.records:
            seconds = end_to_end_seconds(added.executions.get(record.execution_id, []), record)
            # Executions from before this process started were measured by whoever read them live.
            if seconds is not None and record.finished_at >= self.started_at - timedelta(minutes=5):
                END_TO_END_LATENCY.labels(flow=record.flow.value if record.flow else "unknown").observe(seconds)


def _count_error(exc: Exception) -> None:
    ERRORS.labels(service=SERVICE, kind=type(exc).__name__).inc()
