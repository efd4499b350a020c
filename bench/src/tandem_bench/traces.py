"""End-to-end timing from `tandem.trace`: ingest `started_at` → the step that finished the execution.

An execution is finished by the writer's terminal record (succeeded, failed, skipped, dead-lettered), or by the
mapper when it decided there is nothing to write (skipped, failed, held). Retries in between are not finishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from datetime import datetime

import orjson
from aiokafka import AIOKafkaConsumer

from tandem_shared.contracts import Headers
from tandem_shared.contracts.topics import TRACE
from tandem_shared.kafka import KafkaConnection, partitions_of

TERMINAL_WRITER = {"succeeded", "failed", "skipped", "dead_lettered"}
TERMINAL_MAPPER = {"failed", "skipped", "held"}


@dataclass
class Execution:
    ingest_started: float | None = None
    finished: float | None = None
    finished_by: str | None = None
    status: str | None = None


def timestamp(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


class TraceCollector:
    def __init__(self, bootstrap: str, instance_id: str) -> None:
        self._kafka = KafkaConnection.from_env("tandem-bench-traces", bootstrap)
        self._instance = instance_id.encode()
        self.executions: dict[str, Execution] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._progress = asyncio.Event()

    async def start(self) -> None:
        consumer = self._kafka.consumer(enable_auto_commit=False, max_poll_records=2000)
        await consumer.start()
        partitions = await partitions_of(self._kafka, TRACE)
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:
            await consumer.position(tp)
        self._consumer = consumer
        self._task = asyncio.create_task(self._follow(), name="trace-collector")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    def clear(self) -> None:
        self.executions.clear()

    async def _follow(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    headers = dict(record.headers or ())
                    if headers.get(Headers.INSTANCE_ID) != self._instance:
                        continue
                    self._add(orjson.loads(record.value))
            if batches:
                self._progress.set()

    def _add(self, record: dict[str, object]) -> None:
        execution = self.executions.setdefault(str(record["execution_id"]), Execution())
        stage, status = record["stage"], record["status"]
        if stage == "ingest":
            execution.ingest_started = timestamp(str(record["started_at"]))
            return
        terminal = (stage == "writer" and status in TERMINAL_WRITER) or (
            stage == "mapper" and status in TERMINAL_MAPPER
        )
        if terminal and execution.finished is None:
            execution.finished = timestamp(str(record["finished_at"]))
            execution.finished_by = str(stage)
            execution.status = str(status)

    def done(self, execution_ids: set[str]) -> int:
        return sum(
            1
            for e in execution_ids
            if (x := self.executions.get(e)) is not None and x.finished is not None and x.ingest_started is not None
        )

    async def wait_for(self, execution_ids: set[str], *, idle_timeout: float, hard_timeout: float) -> int:
        """Wait until every execution finished, or nothing moved for `idle_timeout` s; returns how many finished."""
        deadline = time.monotonic() + hard_timeout
        last_done, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            done = self.done(execution_ids)
            if done >= len(execution_ids):
                return done
            if done != last_done:
                last_done, last_change = done, time.monotonic()
            elif time.monotonic() - last_change > idle_timeout:
                return done
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), timeout=0.5)
        return self.done(execution_ids)

    def finished(self, execution_ids: set[str]) -> list[Execution]:
        return [
            x
            for e in execution_ids
            if (x := self.executions.get(e)) is not None and x.finished is not None and x.ingest_started is not None
        ]
