"""The load generator: signed vendor webhooks to one loopback base URL at a controlled rate.

Runs as its own process (`python -m tandem_bench.loadgen SPEC OUT`) so its CPU is not the harness's. Every loop is
bounded by a count and a deadline; only 127.0.0.1 is ever addressed.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import uvloop

from tandem_bench.payloads import Clock, Delivery, accessplanit_update, mailchimp_member_put, mailchimp_profile

HARD_DEADLINE_S = 600.0


@dataclass
class Spec:
    base_url: str
    mode: str  # "rate": open loop at `rate` for `duration_s`; "backlog": `count` as fast as `concurrency` allows;
    # "burst": `burst_contacts` contacts each updated `burst_updates` times, `burst_spacing_ms` apart;
    # "direct": `count` member PUTs straight to the Mailchimp simulator at `base_url`, `concurrency` at a time
    instance_id: str
    ap_secret: str
    mc_path_secret: str
    mc_signing_secret: str | None = None
    rate: float = 0.0
    duration_s: float = 0.0
    count: int = 0
    concurrency: int = 64
    burst_contacts: int = 0
    burst_updates: int = 10
    burst_spacing_ms: float = 50.0
    mailchimp_share: float = 0.0
    first_user_id: int = 500_000
    max_in_flight: int = 512
    timeout_s: float = 30.0
    seed: int = 7
    mailchimp_api_key: str = ""


@dataclass
class Result:
    requests: list[list[Any]] = field(default_factory=list)  # [sent_at wall s, latency s, status, execution_id, label]
    late: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    final_versions: dict[str, int] = field(default_factory=dict)
    started_at: float = 0.0
    finished_at: float = 0.0
    cpu_s: float = 0.0


class Sender:
    def __init__(self, spec: Spec, session: aiohttp.ClientSession, result: Result) -> None:
        self.spec = spec
        self.session = session
        self.result = result
        self.clock = Clock()
        self.rng = random.Random(spec.seed)
        self.sequence = 0

    def delivery(self, user_id: int, version: int) -> Delivery:
        self.sequence += 1
        now = int(time.time())
        if self.spec.mailchimp_share and self.rng.random() < self.spec.mailchimp_share:
            return mailchimp_profile(
                instance_id=self.spec.instance_id,
                path_secret=self.spec.mc_path_secret,
                signing_secret=self.spec.mc_signing_secret,
                user_id=user_id,
                version=version,
                fired=self.clock.next(),
                now=now,
            )
        return accessplanit_update(
            instance_id=self.spec.instance_id,
            secret=self.spec.ap_secret,
            user_id=user_id,
            version=version,
            updated=self.clock.next(),
            now=now,
            sequence=self.sequence,
        )

    async def send(self, delivery: Delivery) -> None:
        sent_at = time.time()
        t0 = time.perf_counter()
        status = 0
        execution_id = None
        try:
            async with self.session.request(
                delivery.method, self.spec.base_url + delivery.path, data=delivery.body, headers=delivery.headers
            ) as response:
                status = response.status
                raw = await response.read()
                if status < 300 and raw:
                    try:
                        execution_id = orjson.loads(raw).get("execution_id")
                    except (orjson.JSONDecodeError, AttributeError):
                        execution_id = None
        except (aiohttp.ClientError, TimeoutError) as exc:
            name = type(exc).__name__
            self.result.errors[name] = self.result.errors.get(name, 0) + 1
        self.result.requests.append([sent_at, time.perf_counter() - t0, status, execution_id, delivery.label])


async def run_rate(sender: Sender, spec: Spec) -> None:
    total = int(spec.rate * spec.duration_s)
    in_flight: set[asyncio.Task[None]] = set()
    start = time.perf_counter()
    for i in range(total):
        due = start + i / spec.rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.05:
            sender.result.late += 1
        while len(in_flight) >= spec.max_in_flight:
            await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
        task = asyncio.create_task(sender.send(sender.delivery(spec.first_user_id + i, 1)))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    if in_flight:
        await asyncio.wait(in_flight)


async def run_backlog(sender: Sender, spec: Spec) -> None:
    queue = iter(range(spec.count))

    async def worker() -> None:
        for i in queue:
            await sender.send(sender.delivery(spec.first_user_id + i, 1))

    await asyncio.gather(*(worker() for _ in range(min(spec.concurrency, spec.count))))


async def run_direct(sender: Sender, spec: Spec) -> None:
    queue = iter(range(spec.count))

    async def worker() -> None:
        for i in queue:
            await sender.send(
                mailchimp_member_put(api_key=spec.mailchimp_api_key, user_id=spec.first_user_id + i, version=1)
            )

    await asyncio.gather(*(worker() for _ in range(min(spec.concurrency, spec.count))))


async def run_burst(sender: Sender, spec: Spec) -> None:
    async def contact(index: int) -> None:
        user_id = spec.first_user_id + index
        # Sequential per contact: the sender delivers one contact's updates in the order they were made.
        for version in range(1, spec.burst_updates + 1):
            await sender.send(sender.delivery(user_id, version))
            sender.result.final_versions[str(user_id)] = version
            await asyncio.sleep(spec.burst_spacing_ms / 1000)

    await asyncio.gather(*(contact(i) for i in range(spec.burst_contacts)))


async def generate(spec: Spec) -> Result:
    host = urlsplit(spec.base_url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"the load generator only targets loopback, not {host}")
    result = Result()
    connector = aiohttp.TCPConnector(limit=max(spec.max_in_flight, spec.concurrency), force_close=False)
    timeout = aiohttp.ClientTimeout(total=spec.timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        sender = Sender(spec, session, result)
        result.started_at = time.time()
        runner = {"rate": run_rate, "backlog": run_backlog, "burst": run_burst, "direct": run_direct}[spec.mode]
        await asyncio.wait_for(runner(sender, spec), timeout=HARD_DEADLINE_S)
        result.finished_at = time.time()
    result.cpu_s = time.process_time()
    return result


def main(argv: list[str]) -> int:
    spec_path, out_path = Path(argv[0]), Path(argv[1])
    spec = Spec(**orjson.loads(spec_path.read_bytes()))
    # The same event loop the services run on (uvicorn picks uvloop), so the sender costs as little as they do.
    result = uvloop.run(generate(spec))
    out_path.write_bytes(orjson.dumps(result.__dict__))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
