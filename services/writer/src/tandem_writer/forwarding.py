"""Forwards a command to a retry tier or the dead-letter topic, with the headers of its history (`domain.retry`).

Each forward returns once Kafka acknowledged it (acks=all): only then may the record's offset be committed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from tandem_shared.contracts import ErrorInfo, SyncCommand
from tandem_shared.contracts.topics import COMMANDS_DLQ
from tandem_shared.kafka import Producer
from tandem_shared.kafka.partitioned import InboundRecord
from tandem_shared.metrics import DEAD_LETTERS, RETRIES
from tandem_writer.domain.retry import Hop, Origin, forward_headers
from tandem_writer.durable import durably


def _origin(record: InboundRecord) -> Origin:
    return Origin(record.topic, record.partition, record.offset, record.timestamp_ms)


class Forwarder:
    def __init__(self, producer: Producer, clock: Callable[[], datetime], backoff_s: tuple[float, float]) -> None:
        self._producer = producer
        self._clock = clock
        self._backoff_s = backoff_s

    async def retry(self, record: InboundRecord, command: SyncCommand, hop: Hop, error: ErrorInfo) -> None:
        """The command, as attempt `hop.attempt`, onto `hop.topic`, not to be tried before `hop.not_before`."""
        headers = forward_headers(
            record.headers,
            _origin(record),
            attempt=hop.attempt,
            error=error,
            now=self._clock(),
            not_before_at=hop.not_before,
        )
        value = command.model_copy(update={"attempt": hop.attempt}).model_dump_json().encode()
        await self._send(f"forward to {hop.topic}", hop.topic, record, value, headers)
        RETRIES.labels(target=command.target.value).inc()

    async def dead_letter(self, record: InboundRecord, command: SyncCommand, error: ErrorInfo) -> None:
        await self.dead_letter_value(record, command.model_dump_json().encode(), attempt=command.attempt, error=error)
        DEAD_LETTERS.labels(target=command.target.value).inc()

    async def dead_letter_value(self, record: InboundRecord, value: bytes, *, attempt: int, error: ErrorInfo) -> None:
        """`value` onto the dead-letter topic: a command, or an unreadable record as it came."""
        headers = forward_headers(
            record.headers, _origin(record), attempt=attempt, error=error, now=self._clock(), not_before_at=None
        )
        await self._send("dead-letter", COMMANDS_DLQ, record, value, headers)

    async def _send(self, what: str, topic: str, record: InboundRecord, value: bytes, headers: dict[str, str]) -> None:
        async def send() -> None:
            delivered = await self._producer.send(
                topic, value, key=record.key, headers=headers, partition=record.partition
            )
            await delivered

        await durably(what, send, self._backoff_s)
