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
    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.awaited_one_by_one = 0

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
        self.sent.append(Sent(topic, value, key, dict(headers), partition))
        delivery = _Delivery(self)
        delivery.set_result(None)
        return delivery

    @property
    def commands(self) -> list[SyncCommand]:
        return [SyncCommand.model_validate_json(s.value or b"") for s in self.sent if s.topic == COMMANDS]

    @property
    def traces(self) -> list[TraceRecord]:
        return [TraceRecord.model_validate_json(s.value or b"") for s in self.sent if s.topic == TRACE]
