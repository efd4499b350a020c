"""The producer port every stage publishes through, and its one implementation over aiokafka."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer

from tandem_shared.contracts.envelopes import Envelope
from tandem_shared.ids import new_id
from tandem_shared.kafka.connection import KafkaConnection
from tandem_shared.kafka.counting import count_when_acknowledged

_JSON = b"application/json"


class Producer(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None,
        headers: Mapping[str, str],
        partition: int | None = None,
    ) -> asyncio.Future[Any]:
        """Hands the record over; the returned future resolves once Kafka acknowledged it (or fails)."""
        ...


async def send_envelope(producer: Producer, envelope: Envelope) -> asyncio.Future[Any]:
    return await producer.send(envelope.topic, envelope.value, key=envelope.key, headers=envelope.headers)


class KafkaNotConnected(RuntimeError):
    pass


class KafkaProducer:
    """`Producer` on one aiokafka producer from the connection (acks=all, idempotent, lingering).

    Each record carries FastStream's `content-type` and `correlation_id` headers ahead of Tandem's, as FastStream's
    own publish writes them, so a FastStream subscriber (the mapper) reads it like one of its own. `start` may be
    called again after a failed start (Kafka unreachable): each attempt builds a fresh client. Each record Kafka
    acknowledged counts in `tandem_events_out_total` under the connection's service.
    """

    def __init__(self, connection: KafkaConnection, **overrides: Any) -> None:
        self._connection = connection
        self._overrides = overrides
        self._producer: AIOKafkaProducer | None = None

    @property
    def connected(self) -> bool:
        return self._producer is not None

    async def start(self) -> None:
        producer = self._connection.producer(**self._overrides)
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer

    async def stop(self) -> None:
        """Sends what it holds, then disconnects."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None,
        headers: Mapping[str, str],
        partition: int | None = None,
    ) -> asyncio.Future[Any]:
        if self._producer is None:  # before start, or while Kafka is being reconnected: not durable
            raise KafkaNotConnected("not connected to Kafka")
        record_headers = [("content-type", _JSON), ("correlation_id", _correlation_id())]
        record_headers.extend((name, text.encode()) for name, text in headers.items())
        future: asyncio.Future[Any] = await self._producer.send(
            topic, value=value, key=key, partition=partition, headers=record_headers
        )
        count_when_acknowledged(self._connection.service, topic, future)
        return future

    async def ping(self, timeout: float) -> bool:  # noqa: ASYNC109 (the probe's budget, as FastStream's ping)
        """True when a broker answers a metadata request within `timeout` seconds."""
        if self._producer is None:
            return False
        try:
            async with asyncio.timeout(timeout):
                await self._producer.client.fetch_all_metadata()
        except Exception:
            return False
        return True


def _correlation_id() -> bytes:
    """What FastStream puts there, `str(uuid.uuid4())`, from `new_id`'s cheaper random UUID."""
    hex_id = new_id()
    return f"{hex_id[:8]}-{hex_id[8:12]}-{hex_id[12:16]}-{hex_id[16:20]}-{hex_id[20:]}".encode()
