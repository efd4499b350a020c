"""The broker's CPU per record for a stage's publishing shape: rounds of 500 commands and 500 trace records handed
to one `KafkaProducer` at once, each round waited for, as the mapper publishes a batch of changes.

    TANDEM_KAFKA_PORT=... .venv/bin/python -m tandem_bench.produce_cpu [--rounds 60] [--max-batch-size BYTES]

Values are filler of a command's and a mapper trace record's size (873 and 830 bytes in a backfill), published to
two bench topics of their own with the partitions of `tandem.commands` and `tandem.trace` (never to those: a reader of
the trace would find filler there); keys are new per record, so records spread over the partitions as contacts and
executions do. Reports the broker process's CPU
(found by its listening port) and this process's, per record; without `--max-batch-size` the producer is
configured as every stage's (`KafkaConnection.producer`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from typing import Any

import psutil

from tandem_bench.resources import pid_listening_on
from tandem_devstack.infra import ensure_kafka
from tandem_shared.contracts.topics import COMMANDS, TOPICS, TRACE, TopicSpec
from tandem_shared.kafka import KafkaConnection, ensure_topics
from tandem_shared.kafka.producer import KafkaProducer

ROUND = 500
COMMAND_BYTES = 873
TRACE_BYTES = 830
WARMUP_ROUNDS = 3
_PARTITIONS = {spec.name: spec.partitions for spec in TOPICS}
BENCH_COMMANDS = "bench.produce.commands"
BENCH_TRACE = "bench.produce.trace"
BENCH_TOPICS = (
    TopicSpec(BENCH_COMMANDS, _PARTITIONS[COMMANDS], {"retention.ms": str(3_600_000)}, "produce_cpu: commands"),
    TopicSpec(BENCH_TRACE, _PARTITIONS[TRACE], {"retention.ms": str(3_600_000)}, "produce_cpu: trace records"),
)


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def _round(producer: KafkaProducer) -> None:
    command, trace = b"c" * COMMAND_BYTES, b"t" * TRACE_BYTES
    headers = {"x-instance-id": "bench"}
    deliveries: list[asyncio.Future[Any]] = []
    for _ in range(ROUND):
        key = f"bench:ap:{uuid.uuid4().hex}".encode()
        deliveries.append(await producer.send(BENCH_COMMANDS, command, key=key, headers=headers))
    for _ in range(ROUND):
        key = uuid.uuid4().hex.encode()
        deliveries.append(await producer.send(BENCH_TRACE, trace, key=key, headers=headers))
    await asyncio.gather(*deliveries)


async def measure(bootstrap: str, rounds: int, max_batch_size: int | None) -> tuple[float, float, float]:
    """(broker ms per record, this process's ms per record, wall seconds)."""
    pid = pid_listening_on(int(bootstrap.rsplit(":", 1)[1]))
    if pid is None:
        raise SystemExit(f"no process listens on {bootstrap}")
    broker = psutil.Process(pid)
    overrides = {"max_batch_size": max_batch_size} if max_batch_size else {}
    connection = KafkaConnection.from_env("tandem-bench-produce", bootstrap)
    await ensure_topics(connection, BENCH_TOPICS)
    producer = KafkaProducer(connection, **overrides)
    await producer.start()
    try:
        for _ in range(WARMUP_ROUNDS):
            await _round(producer)
        broker_before, own_before, started = _cpu_s(broker), time.process_time(), time.monotonic()
        for _ in range(rounds):
            await _round(producer)
        records = rounds * 2 * ROUND
        return (
            1000 * (_cpu_s(broker) - broker_before) / records,
            1000 * (time.process_time() - own_before) / records,
            time.monotonic() - started,
        )
    finally:
        await producer.stop()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--max-batch-size", type=int, help="bytes; default: the stages' producer configuration")
    args = parser.parse_args()
    bootstrap = ensure_kafka().address  # before the event loop: it runs one of its own while it waits
    broker_ms, own_ms, wall_s = asyncio.run(measure(bootstrap, args.rounds, args.max_batch_size))
    size = args.max_batch_size or "stages'"
    sys.stdout.write(
        f"max_batch_size={size} records={args.rounds * 2 * ROUND} broker_ms_per_record={broker_ms:.4f} "
        f"producer_ms_per_record={own_ms:.4f} wall_s={wall_s:.2f}\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
