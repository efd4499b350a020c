"""The stack under test: Kafka and Redis (devstack), both simulators, Tandem's services and the naive reference,
each a real process on a free loopback port, with an instance of its own so earlier runs never interfere.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tandem_bench.rawkafka import RAW_TOPICS
from tandem_bench.resources import pid_listening_on
from tandem_devstack import demo, infra
from tandem_devstack.processes import free_port
from tandem_devstack.stack import Ports, ServiceSpec, Stack, service_specs, stack_env
from tandem_shared.contracts import InstanceConfig
from tandem_shared.instance_store import put_instance
from tandem_shared.instances import demo_instance
from tandem_shared.kafka import ensure_topics

NAIVE = "naive"


@dataclass
class BenchStack:
    stack: Stack
    ports: Ports
    naive_port: int
    instance: InstanceConfig
    kafka: str
    redis: str
    pids: dict[str, int]

    def url(self, service: str) -> str:
        port = self.naive_port if service == NAIVE else getattr(self.ports, service)
        return f"http://127.0.0.1:{port}"

    def sim(self, path: str, json: object | None = None, method: str = "POST") -> httpx.Response:
        response = httpx.request(method, self.url("mailchimp_sim") + path, json=json, timeout=30)
        response.raise_for_status()
        return response


def bench_instance(ports: Ports, instance_id: str) -> InstanceConfig:
    base = demo_instance()
    return base.model_copy(
        update={
            "id": instance_id,
            "name": f"benchmark {instance_id}",
            "mailchimp": base.mailchimp.model_copy(
                update={"api_base_url": f"http://127.0.0.1:{ports.mailchimp_sim}/3.0"}
            ),
            "accessplanit": base.accessplanit.model_copy(
                update={"base_url": f"http://127.0.0.1:{ports.accessplanit_sim}"}
            ),
        }
    )


def naive_spec(port: int) -> ServiceSpec:
    argv = ["uvicorn", "tandem_bench.naive:create_app", "--factory", "--host", "127.0.0.1", "--port", str(port)]
    return ServiceSpec(NAIVE, [*argv, "--no-access-log"], port, "/health/live")


def _port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1].split("/")[0])


@contextmanager
def bench_stack(data_dir: Path, *, services_env: dict[str, str] | None = None) -> Iterator[BenchStack]:
    kafka, redis = infra.ensure_kafka().address, infra.ensure_redis().address
    asyncio.run(ensure_topics(kafka, RAW_TOPICS))
    ports = Ports(*(free_port() for _ in range(5)))
    naive_port = free_port()
    suffix = uuid.uuid4().hex[:8]
    instance = bench_instance(ports, f"bench-{suffix}")
    asyncio.run(put_instance(kafka, instance))
    env = stack_env(
        kafka=kafka,
        redis=redis,
        ports=ports,
        data_dir=data_dir,
        extra={
            "TANDEM_MAPPER_GROUP_ID": f"tandem-mapper-{suffix}",
            "TANDEM_WRITER_GROUP_ID": f"tandem-writer-{suffix}",
            "TANDEM_MAPPER_PORT": str(ports.mapper),
            "TANDEM_WRITER_PORT": str(ports.writer),
            **(services_env or {}),
        },
    )
    stack = Stack(env=env, log_dir=data_dir / "logs")
    try:
        for spec in [*service_specs(ports), naive_spec(naive_port)]:
            stack.start(spec)
        demo.register_accessplanit_webhook(ports, instance.id)
        pids = {s.spec.name: s.pid for s in stack.running}
        for name, address in (("kafka", kafka), ("redis", redis)):
            pid = pid_listening_on(_port_of(address))
            if pid:
                pids[name] = pid
        print(f"bench: stack up (instance {instance.id}, python {sys.version.split()[0]})", flush=True)
        yield BenchStack(stack, ports, naive_port, instance, kafka, redis, pids)
    finally:
        stack.stop()
