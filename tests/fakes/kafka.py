"""Kafka in memory: topics, consumer groups' committed offsets, and a group consumer driven by the test.

The model is getsentry/arroyo's `backends/local` (a `LocalBroker` holding the records, consumers with positions,
pause/resume and commits). `FakeConsumer` offers what `tandem_shared.kafka.partitioned.ConsumerClient` asks of
aiokafka's AIOKafkaConsumer; which partitions it owns is the test's decision (`rebalance`), made the way aiokafka's
group coordinator makes it: revocation first (awaited, assignment still the old one), then the new assignment.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence

from aiokafka import ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaConnectionError, KafkaError


class FakeBroker:
    def __init__(self) -> None:
        self._logs: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {}
        self.committed: dict[str, dict[TopicPartition, int]] = defaultdict(dict)  # group → partition → offset
        self._consumers: list[FakeConsumer] = []

    def create_topic(self, topic: str, partitions: int = 1) -> list[TopicPartition]:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        for tp in tps:
            self._logs.setdefault(tp, [])
        return tps

    def produce(
        self,
        tp: TopicPartition,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> int:
        log = self._logs[tp]
        encoded = [(name, v.encode()) for name, v in (headers or {}).items()]
        offset = len(log)
        log.append(
            ConsumerRecord(
                topic=tp.topic,
                partition=tp.partition,
                offset=offset,
                timestamp=int(time.time() * 1000),
                timestamp_type=0,
                key=key,
                value=value,
                checksum=None,
                serialized_key_size=len(key or b""),
                serialized_value_size=len(value),
                headers=encoded,
            )
        )
        for consumer in self._consumers:
            consumer.wake()
        return offset

    def read(self, tp: TopicPartition, position: int, limit: int) -> list[ConsumerRecord[bytes, bytes]]:
        return self._logs[tp][position : position + limit]

    def consumer(self, group_id: str, *, max_wait_s: float = 0.01) -> FakeConsumer:
        consumer = FakeConsumer(self, group_id, max_wait_s=max_wait_s)
        self._consumers.append(consumer)
        return consumer


class FakeConsumer:
    """A group member. `getmany` waits at most `max_wait_s` (not the caller's `timeout_ms`) for records, so a poll
    loop turns quickly in a test. `fail_polls` / `fail_commits`: the next n calls raise, as a broker outage would."""

    def __init__(self, broker: FakeBroker, group_id: str, *, max_wait_s: float) -> None:
        self._broker = broker
        self.group_id = group_id
        self._max_wait_s = max_wait_s
        self._listener: ConsumerRebalanceListener | None = None
        self.topics: list[str] = []
        self._assignment: set[TopicPartition] = set()
        self._positions: dict[TopicPartition, int] = {}
        self._paused: set[TopicPartition] = set()
        self._wake = asyncio.Event()
        self.started = False
        self.stopped = False
        self.fail_polls = 0
        self.fail_commits = 0
        self.commits: list[dict[TopicPartition, int]] = []  # every successful commit, in order
        self.pauses: list[TopicPartition] = []
        self.resumes: list[TopicPartition] = []

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True
        self._assignment = set()

    def subscribe(self, topics: Sequence[str], *, listener: ConsumerRebalanceListener) -> None:
        self.topics = list(topics)
        self._listener = listener

    async def rebalance(self, partitions: set[TopicPartition]) -> None:
        """The group coordinator's decision: this member now owns `partitions`."""
        assert self._listener is not None, "subscribe first"
        await self._listener.on_partitions_revoked(set(self._assignment))
        self._assignment = set(partitions)
        self._paused &= self._assignment
        committed = self._broker.committed[self.group_id]
        self._positions = {tp: committed.get(tp, 0) for tp in partitions}  # auto_offset_reset="earliest"
        await self._listener.on_partitions_assigned(set(partitions))
        self.wake()

    async def getmany(
        self, *, timeout_ms: int, max_records: int
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        if self.fail_polls > 0:
            self.fail_polls -= 1
            raise KafkaConnectionError("the broker is away")
        deadline = asyncio.get_running_loop().time() + min(timeout_ms / 1000, self._max_wait_s)
        while True:
            self._wake.clear()
            batches = self._fetch(max_records)
            remaining = deadline - asyncio.get_running_loop().time()
            if batches or remaining <= 0:
                return batches
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=remaining)
            except TimeoutError:
                return {}

    def _fetch(self, max_records: int) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {}
        for tp in sorted(self._assignment - self._paused):
            if max_records <= 0:
                break
            records = self._broker.read(tp, self._positions[tp], max_records)
            if records:
                batches[tp] = records
                self._positions[tp] += len(records)
                max_records -= len(records)
        return batches

    def assignment(self) -> set[TopicPartition]:
        return set(self._assignment)

    def pause(self, *partitions: TopicPartition) -> None:
        self.pauses.extend(partitions)
        self._paused.update(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self.resumes.extend(partitions)
        self._paused.difference_update(partitions)
        self.wake()

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.fail_commits > 0:
            self.fail_commits -= 1
            raise KafkaError("the coordinator is away")
        self._broker.committed[self.group_id].update(offsets)
        self.commits.append(dict(offsets))
