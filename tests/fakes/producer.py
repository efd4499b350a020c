"""An in-memory `Producer`: what was sent, decoded by topic, and whether the caller awaited a delivery on its own."""

from __future__ import annotations

import asyncio
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any

from tandem_shared.contracts import SyncCommand, TraceRecord
from tandem_shared.contracts.topics import COMMANDS, TRACE


@dataclass(frozen=True)
class Sent:
    topic: str
    value: bytes | None
    key: bytes | None
    headers: dict[str, str]
    partition: int | None


class _Delivery(asyncio.Future[Any]):
    """Counts the awaits of this one delivery (`asyncio.gather` waits through callbacks, not by awaiting)."""

    def __init__(self, owner: InMemoryProducer) -> None:
        super().__init__()
        self._owner = owner

    def __await__(self) -> Generator[Any, None, Any]:
        self._owner.awaited_one_by_one += 1
        return (yield from super().__await__())


class InMemoryProducer:
    """Kafka in memory. `failures`: the next so many sends raise, as during a broker outage; `refused_topics`:
    records to these topics are handed over but their deliveries fail, as when the broker refuses them."""

    def __init__(self, *, refused_topics: frozenset[str] = frozenset()) -> None:
        self.sent: list[Sent] = []
        self.awaited_one_by_one = 0
        self.failures = 0
        self.refused_topics = refused_topics

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None,
        headers: Mapping[str, str],
        partition: int | None = None,
    ) -> asyncio.Future[Any]:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("broker unavailable")
        self.sent.append(Sent(topic, value, key, dict(headers), partition))
        delivery = _Delivery(self)
        if topic in self.refused_topics:
            delivery.set_exception(ConnectionError("the broker refused the record"))
        else:
            delivery.set_result(None)
        return delivery

    @property
    def commands(self) -> list[SyncCommand]:
        return [SyncCommand.model_validate_json(s.value or b"") for s in self.sent if s.topic == COMMANDS]

    @property
    def traces(self) -> list[TraceRecord]:
        return [TraceRecord.model_validate_json(s.value or b"") for s in self.sent if s.topic == TRACE]
