"""The raw Kafka ceiling: the least any two-hop Kafka pipeline must do, measured with plain aiokafka.

producer → bench.raw.changes → relay → bench.raw.commands → sink: three processes like ingest, mapper and writer,
the same producer guarantees as Tandem (acks=all, idempotent), the same partition counts and the same message sizes
as a ChangeEvent and a SyncCommand. No HTTP at either end, no parsing, no trace records: whatever Tandem does on top
is what the ratio Tandem ÷ ceiling prices.

`python -m tandem_bench.rawkafka produce|relay|sink …` — each prints READY once it is ready to work.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tandem_shared.contracts.topics import DEFAULT_PARTITIONS, TopicSpec
from tandem_shared.kafka import KafkaConnection

RAW_CHANGES = "bench.raw.changes"
RAW_COMMANDS = "bench.raw.commands"
RAW_TOPICS = (
    TopicSpec(RAW_CHANGES, DEFAULT_PARTITIONS, {"retention.ms": str(3_600_000)}, "raw Kafka ceiling, hop 1"),
    TopicSpec(RAW_COMMANDS, DEFAULT_PARTITIONS, {"retention.ms": str(3_600_000)}, "raw Kafka ceiling, hop 2"),
)
BATCH = 500
IDLE_EXIT_S = 20.0


def message(sent_at: float, size: int) -> bytes:
    head = orjson.dumps({"t": sent_at})
    return head + b" " * max(0, size - len(head))


def sent_at_of(value: bytes) -> float:
    return float(orjson.loads(value.split(b"}", 1)[0] + b"}")["t"])


def producer_for(bootstrap: str) -> AIOKafkaProducer:
    # Tandem's guarantees (acks=all, idempotent) without its linger: the ceiling is measured as it always was.
    return KafkaConnection.from_env("tandem-bench-raw", bootstrap).producer(linger_ms=0)


async def ready_consumer(bootstrap: str, topic: str, group: str) -> AIOKafkaConsumer:
    consumer = KafkaConnection.from_env("tandem-bench-raw", bootstrap).consumer(
        topic, group_id=group, auto_offset_reset="latest", enable_auto_commit=False
    )
    await consumer.start()
    deadline = time.monotonic() + 60
    while not consumer.assignment() and time.monotonic() < deadline:
        await consumer.getmany(timeout_ms=200)
    for tp in consumer.assignment():
        await consumer.position(tp)  # pins "latest" now, before the producer starts
    return consumer


async def produce(bootstrap: str, count: int, size: int, rate: float) -> None:
    producer = producer_for(bootstrap)
    await producer.start()
    print("READY", flush=True)
    try:
        start = time.perf_counter()
        pending = []
        for i in range(count):
            if rate > 0:
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            pending.append(await producer.send(RAW_CHANGES, message(time.time(), size), key=str(i).encode()))
            if len(pending) >= BATCH:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def relay(bootstrap: str, size: int, group: str) -> None:
    consumer = await ready_consumer(bootstrap, RAW_CHANGES, group)
    producer = producer_for(bootstrap)
    await producer.start()
    print("READY", flush=True)
    idle_since = time.monotonic()
    try:
        while time.monotonic() - idle_since < IDLE_EXIT_S:
            batches = await consumer.getmany(timeout_ms=200, max_records=BATCH)
            if not batches:
                continue
            idle_since = time.monotonic()
            sends = [
                await producer.send(RAW_COMMANDS, message(sent_at_of(r.value), size), key=r.key)
                for records in batches.values()
                for r in records
            ]
            await asyncio.gather(*sends)
            await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()


async def sink(bootstrap: str, group: str, expected: int, out: Path) -> None:
    consumer = await ready_consumer(bootstrap, RAW_COMMANDS, group)
    print("READY", flush=True)
    received: list[tuple[float, float]] = []
    idle_since = time.monotonic()
    try:
        while len(received) < expected and time.monotonic() - idle_since < IDLE_EXIT_S:
            batches = await consumer.getmany(timeout_ms=200, max_records=BATCH)
            if not batches:
                continue
            now = time.time()
            idle_since = time.monotonic()
            received.extend((sent_at_of(r.value), now) for records in batches.values() for r in records)
            await consumer.commit()
    finally:
        await consumer.stop()
    # The harness reads this file once the sink has exited: nothing else runs on this loop any more.
    out.write_bytes(orjson.dumps(received))  # noqa: ASYNC240


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tandem_bench.rawkafka")
    parser.add_argument("role", choices=["produce", "relay", "sink"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--group", default="bench-raw")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.role == "produce":
        asyncio.run(produce(args.bootstrap, args.count, args.size, args.rate))
    elif args.role == "relay":
        asyncio.run(relay(args.bootstrap, args.size, args.group))
    else:
        asyncio.run(sink(args.bootstrap, args.group, args.count, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
