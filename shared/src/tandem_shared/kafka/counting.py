"""`tandem_events_in_total` / `tandem_events_out_total`, counted where every service's records pass: the producer
(once Kafka acknowledged a record), the topic follower, the partitioned consumer and the FastStream subscribers of a
broker built by `KafkaConnection` (its middleware). Labels as the dashboard reads them: `service` (the stage) and
`topic`. A record delivered again (after a failed batch or a rebalance) is counted again: it was consumed again."""

from __future__ import annotations

import asyncio
from collections import Counter as Tally
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import ConsumerRecord
from faststream import BaseMiddleware

from tandem_shared.metrics import EVENTS_IN, EVENTS_OUT


def service_of(client_id: str) -> str:
    """The stage a client id names: `tandem-writer` → `writer` (the `service` label every metric uses)."""
    return client_id.removeprefix("tandem-")


def received(service: str, records: Iterable[ConsumerRecord[Any, Any]]) -> None:
    for topic, count in Tally(record.topic for record in records).items():
        EVENTS_IN.labels(service=service, topic=topic).inc(count)


def count_when_acknowledged(service: str, topic: str, future: asyncio.Future[Any]) -> None:
    """Counts the record once Kafka acknowledged it; a send that failed or was cancelled is not counted."""

    def acknowledged(done: asyncio.Future[Any]) -> None:
        if not done.cancelled() and done.exception() is None:
            EVENTS_OUT.labels(service=service, topic=topic).inc()

    future.add_done_callback(acknowledged)


def receipt_middleware(service: str) -> Callable[..., BaseMiddleware]:
    """A FastStream broker middleware counting what its subscribers receive (one record, or a batch's records)."""

    class CountReceived(BaseMiddleware):
        async def on_receive(self) -> None:
            raw = self.msg
            received(service, raw if isinstance(raw, tuple | list) else [raw])

    return CountReceived
