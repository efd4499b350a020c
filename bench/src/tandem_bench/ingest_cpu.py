"""Ingest's CPU per accepted accessplanit webhook: a real uvicorn process against the devstack's Kafka and Redis.

    TANDEM_KAFKA_PORT=... TANDEM_REDIS_PORT=... .venv/bin/python -m tandem_bench.ingest_cpu -n 4000

Registers a fresh instance, starts ingest (poller off), warms it up, then fires N signed webhooks for distinct users
at the given concurrency and reports the process's CPU (user+system, psutil) per 2xx answered.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

import aiohttp
import psutil

from tandem_bench.payloads import accessplanit_update
from tandem_devstack.infra import ensure_kafka, ensure_redis
from tandem_devstack.stack import DEMO_ACCESSPLANIT_WEBHOOK_SECRET
from tandem_shared.instance_store import delete_instance, put_instance
from tandem_shared.instances import demo_instance
from tandem_shared.kafka import KafkaConnection, ensure_topics

SECRET_ENV = "TANDEM_DEMO_ACCESSPLANIT_WEBHOOK_SECRET"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def fire(base: str, instance_id: str, first_user: int, n: int, concurrency: int) -> dict[int, int]:
    statuses: dict[int, int] = {}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(first_user + i)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            while not queue.empty():
                user = queue.get_nowait()
                d = accessplanit_update(
                    instance_id=instance_id,
                    secret=DEMO_ACCESSPLANIT_WEBHOOK_SECRET,
                    user_id=user,
                    version=1,
                    updated=datetime.now(UTC),
                    now=int(time.time()),
                    sequence=user,
                )
                async with session.request(d.method, base + d.path, data=d.body, headers=d.headers) as resp:
                    await resp.read()
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


async def wait_ready(base: str, instance_id: str, first_user: int) -> None:
    """Until the instance is materialized: a signed delivery is answered 2xx (an unknown instance's is refused)."""
    for _ in range(300):
        try:
            statuses = await fire(base, instance_id, first_user, 1, 1)
            if any(200 <= status < 300 for status in statuses):
                return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("ingest did not become ready")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=4000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()

    kafka, redis = ensure_kafka().address, ensure_redis().address
    connection = KafkaConnection.from_env("tandem-cpu-per-webhook", kafka)
    asyncio.run(ensure_topics(connection))
    instance_id = f"cpu-{uuid.uuid4().hex[:8]}"
    asyncio.run(
        put_instance(
            connection,
            demo_instance(signed_accessplanit_webhooks=True).model_copy(
                update={"id": instance_id, "name": instance_id}
            ),
        )
    )
    port = free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "REDIS_URL": redis,
        "TANDEM_INGEST_POLLER_ENABLED": "false",
        "TANDEM_LOG_LEVEL": "WARNING",
        SECRET_ENV: DEMO_ACCESSPLANIT_WEBHOOK_SECRET,
    }
    cmd = [sys.executable, "-m", "uvicorn", "tandem_ingest.entrypoint:create_app", "--factory", "--host", "127.0.0.1"]
    proc = subprocess.Popen([*cmd, "--port", str(port), "--no-access-log"], env=env)
    base = f"http://127.0.0.1:{port}"
    first = 10_000_000 + int(time.time()) % 1_000_000 * 100
    try:
        asyncio.run(wait_ready(base, instance_id, first))
        first += 1
        asyncio.run(fire(base, instance_id, first, args.warmup, args.concurrency))
        first += args.warmup
        ps = psutil.Process(proc.pid)
        for _ in range(args.rounds):
            before = ps.cpu_times()
            started = time.perf_counter()
            statuses = asyncio.run(fire(base, instance_id, first, args.n, args.concurrency))
            wall = time.perf_counter() - started
            after = ps.cpu_times()
            first += args.n
            cpu = (after.user - before.user) + (after.system - before.system)
            accepted = sum(c for s, c in statuses.items() if 200 <= s < 300)
            sys.stdout.write(
                f"statuses={dict(sorted(statuses.items()))} cpu={cpu:.2f}s wall={wall:.2f}s "
                f"rate={accepted / wall:.0f}/s cpu_ms_per_accepted={1000 * cpu / max(accepted, 1):.3f}\n"
            )
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        asyncio.run(delete_instance(connection, instance_id))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
