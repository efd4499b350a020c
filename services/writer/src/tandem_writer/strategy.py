"""How the writer works through a partition: the shared `KeyedStrategy`, with `Delivery` as its handler.

On `tandem.commands` several contacts are written at once (each contact's commands in order), a contact's next
write waits out the contact write interval and carries every upsert for it queued meanwhile (coalescing). A retry
tier takes one record at a time, each no sooner than its `x-not-before`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from aiokafka import TopicPartition

from tandem_shared.contracts.topics import COMMANDS
from tandem_shared.kafka.partitioned import InboundRecord, KeyedStrategy, StrategyFactory
from tandem_writer.domain.retry import not_before


class Deliveries(Protocol):
    """What the strategy asks of `tandem_writer.delivery.Delivery`."""

    async def handle(self, record: InboundRecord, absorbed: Sequence[InboundRecord] = ()) -> object: ...
    def absorbable(self, head: InboundRecord, behind: Sequence[InboundRecord]) -> Sequence[InboundRecord]: ...
    def is_orphan(self, record: InboundRecord) -> bool: ...


def delivery_strategy(delivery: Deliveries, *, concurrency: int, contact_interval_s: float) -> StrategyFactory:
    def due(record: InboundRecord) -> datetime | None:
        at = not_before(record.headers)
        # A record of a removed instance is only skipped, so it need not wait until due (a long delay at the head of
        # a retry partition would otherwise hold up every instance's retries behind it).
        return None if at is None or delivery.is_orphan(record) else at

    def create(partition: TopicPartition, progress: Callable[[], None]) -> KeyedStrategy:
        main = partition.topic == COMMANDS
        return KeyedStrategy(
            partition,
            delivery.handle,
            progress=progress,
            concurrency=concurrency if main else 1,
            key_interval_s=contact_interval_s if main else 0.0,
            fold=delivery.absorbable,
            due=due,
        )

    return create
