"""What a partitioned consumer drives for each assigned partition (after getsentry/arroyo's ProcessingStrategy).

The consumer creates one strategy per partition it is assigned, `submit`s the partition's records in offset order,
asks `poll()` what is finished and commits exactly that, and on revocation or shutdown `close`s the strategy and
`join`s it within a grace period. How records are processed (one at a time, several keys at once, folded together)
is the strategy's business; the consumer knows only this protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from aiokafka import TopicPartition

from tandem_shared.kafka.partitioned.records import InboundRecord


class ProcessingStrategy(Protocol):
    def submit(self, record: InboundRecord) -> None:
        """Take the partition's next record (offsets ascending). Never blocks: the consumer pauses the partition
        while `buffered` is at its limit."""

    def poll(self) -> int | None:
        """Do any work that has become due, and report progress: the offset to commit (every record below it is
        finished), or None while nothing is."""

    @property
    def buffered(self) -> int:
        """Records submitted and not yet taken in hand (the consumer's back-pressure measure)."""

    def close(self) -> None:
        """Accept no more records and start none: what is in hand goes on, what is buffered is left (a later owner
        of the partition reads it again from the committed offset)."""

    async def join(self, grace_s: float | None = None) -> None:
        """After `close`: wait until the records in hand are finished, at most `grace_s` seconds (arroyo's
        `timeout`, named for what it is: not an error but the end of a grace period); whatever is not finished by
        then is abandoned as by `terminate`."""

    async def terminate(self) -> None:
        """Stop at once: records in hand are abandoned, and `poll` never reports them (or anything after them)
        finished."""


class StrategyFactory(Protocol):
    def __call__(self, partition: TopicPartition, progress: Callable[[], None]) -> ProcessingStrategy:
        """A strategy for a newly assigned partition. It calls `progress()` whenever it finished a record, so the
        consumer can resume the partition as soon as its buffer has room."""
