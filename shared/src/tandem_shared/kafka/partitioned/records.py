"""The record a partitioned consumer hands to its strategies: aiokafka's record with its headers decoded."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aiokafka import ConsumerRecord


@dataclass(frozen=True)
class InboundRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Mapping[str, str]
    timestamp_ms: int

    @property
    def where(self) -> str:
        return f"{self.topic}@{self.partition}:{self.offset}"


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
