"""The stack under test: Kafka and Redis (devstack), both simulators, Tandem's services and the naive reference,
each a real process on a free loopback port, with an instance of its own so earlier runs never interfere.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path

import httpx

from tandem_bench.rawkafka import RAW_TOPICS
from tandem_bench.resources import pid_listening_on
from tandem_devstack import infra
from tandem_devstack.paths import tandem_home
from tandem_devstack.processes import free_port, port_open
from tandem_devstack.stack import Ports, ServiceSpec, Stack, service_specs, stack_env
from tandem_shared.contracts import InstanceConfig
from tandem_shared.contracts.topics import CHANGES, COMMANDS
from tandem_shared.instance_store import put_instance, remove_instance
from tandem_shared.instances import demo_instance
from tandem_shared.kafka import KafkaConnection, ensure_topics, partitions_of
from tandem_shared.redis.client import connect_url
from tandem_shared.redis.purge import purge_instance

NAIVE = "naive"


@dataclass
class BenchStack:
    stack: Stack
    ports: Ports
    naive_port: int
    instance: InstanceConfig
    import_instance: InstanceConfig  # the default, unsigned accessplanit path (the import phase)
    kafka: str
    redis: str
    pids: dict[str, int]
    groups: dict[str, str]  # consumer group → the topic it consumes

    def url(self, service: str) -> str:
        port = self.naive_port if service == NAIVE else getattr(self.ports, service)
        return f"http://127.0.0.1:{port}"

    def sim(self, path: str, json: object | None = None, method: str = "POST") -> httpx.Response:
        response = httpx.request(method, self.url("mailchimp_sim") + path, json=json, timeout=30)
        response.raise_for_status()
        return response


def bench_instance(ports: Ports, instance_id: str, *, signed: bool = True) -> InstanceConfig:
    """The load generator signs its accessplanit deliveries and carries the whole record (the simulator's opt-in
    signing): the pipeline phases measure Tandem, not accessplanit's read budget. `signed=False` is the default
    path a real tenant takes (each announced user read back), which the import phase measures."""
    base = demo_instance(signed_accessplanit_webhooks=signed)
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


def pipeline_env(
    kafka: str, redis: str, ports: Ports, data_dir: Path, suffix: str, extra: Mapping[str, str] | None = None
) -> tuple[dict[str, str], dict[str, str]]:
    """The services' environment for a bench stack of its own: mapper and writer in consumer groups named by
    `suffix`, started at the end of their topics (`start_groups_at_end`). Returns the environment and the groups
    (group → the topic it consumes)."""
    mapper_group, writer_group = f"tandem-mapper-{suffix}", f"tandem-writer-{suffix}"
    groups = {mapper_group: CHANGES, writer_group: COMMANDS}
    asyncio.run(start_groups_at_end(kafka, groups))
    env = stack_env(
        kafka=kafka,
        redis=redis,
        ports=ports,
        data_dir=data_dir,
        extra={
            "TANDEM_MAPPER_GROUP_ID": mapper_group,
            "TANDEM_WRITER_GROUP_ID": writer_group,
            "TANDEM_MAPPER_PORT": str(ports.mapper),
            "TANDEM_WRITER_PORT": str(ports.writer),
            **(extra or {}),
        },
    )
    return env, groups


async def start_groups_at_end(bootstrap: str, groups: dict[str, str]) -> None:
    """Commit each new consumer group's offsets at the current end of its topic before the service starts.

    The services start new groups at the earliest offset; on a broker kept between runs that would replay every
    earlier run's records first, and the benchmark would measure the replay.
    """
    connection = _connection(bootstrap)
    for group, topic in groups.items():
        consumer = connection.consumer(group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            partitions = await partitions_of(connection, topic)
            consumer.assign(partitions)
            end = await consumer.end_offsets(partitions)
            await consumer.commit(end)
        finally:
            await consumer.stop()


async def lag(bootstrap: str, groups: dict[str, str]) -> int:
    """Records on the groups' topics that their groups have not committed yet."""
    connection = _connection(bootstrap)
    admin = connection.admin("tandem-bench-lag")
    consumer = connection.consumer(enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        behind = 0
        for group, topic in groups.items():
            partitions = await partitions_of(connection, topic)
            end = await consumer.end_offsets(partitions)
            committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
            for tp in partitions:
                done = committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0
                behind += max(0, end[tp] - done)
        return behind
    finally:
        await consumer.stop()
        await admin.close()


def naive_spec(port: int) -> ServiceSpec:
    argv = ["uvicorn", "tandem_bench.naive:create_app", "--factory", "--host", "127.0.0.1", "--port", str(port)]
    return ServiceSpec(NAIVE, [*argv, "--no-access-log"], port, "/health/live")


def _connection(bootstrap: str) -> KafkaConnection:
    return KafkaConnection.from_env("tandem-bench", bootstrap)


def _port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1].split("/")[0])


@dataclass
class Infra:
    kafka: str
    redis: str
    kafka_started_here: bool


@contextmanager
def bench_infra() -> Iterator[Infra]:
    """Kafka and Redis for one run. What this starts it stops again, however the run ends (a broker of its own
    also starts and ends empty); a broker or Redis that was running already is left running."""
    broker_dir = tandem_home() / "kafka" / f"broker-{infra.kafka_port()}"
    # The bench process itself talks to the simulators on loopback (webhook registration, its observers): they are
    # development vendor hosts, as for the services it starts (stack_env).
    os.environ.setdefault("TANDEM_DEVELOPMENT_VENDOR_HOSTS", "127.0.0.1,localhost")
    with contextlib.ExitStack() as started:
        if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and not port_open(infra.HOST, infra.kafka_port()):
            # A broker of our own starts empty: earlier runs' records would slow every new consumer group (the
            # test suite's included) and change what the run measures.
            shutil.rmtree(broker_dir, ignore_errors=True)
        kafka = infra.ensure_kafka()
        if kafka.started_here:
            started.callback(shutil.rmtree, broker_dir, ignore_errors=True)
        started.callback(kafka.stop)  # only what was started here
        redis = infra.ensure_redis()
        started.callback(redis.stop)
        yield Infra(kafka.address, redis.address, kafka.started_here)


@contextmanager
def bench_stack(data_dir: Path, *, services_env: dict[str, str] | None = None) -> Iterator[BenchStack]:
    with bench_infra() as own:
        with _stack(own, data_dir, services_env) as stack:
            yield stack


@contextmanager
def _stack(own: Infra, data_dir: Path, services_env: dict[str, str] | None) -> Iterator[BenchStack]:
    kafka, redis = own.kafka, own.redis
    asyncio.run(ensure_topics(_connection(kafka), RAW_TOPICS))
    ports = Ports(**{f.name: free_port() for f in fields(Ports)})
    naive_port = free_port()
    suffix = uuid.uuid4().hex[:8]
    instance = bench_instance(ports, f"bench-{suffix}")
    import_instance = bench_instance(ports, f"bench-{suffix}-import", signed=False)
    for each in (instance, import_instance):
        asyncio.run(put_instance(_connection(kafka), each))
    env, groups = pipeline_env(kafka, redis, ports, data_dir, suffix, services_env)
    stack = Stack(env=env, log_dir=data_dir / "logs")
    try:
        # The console reads tandem.trace from its beginning into its own store: off the sync path, and on a broker
        # kept between runs it would spend the run catching up on earlier runs' records.
        for spec in [*service_specs(ports), naive_spec(naive_port)]:
            if spec.name != "console":
                stack.start(spec)
        pids = {s.spec.name: s.pid for s in stack.running}
        for name, address in (("kafka", kafka), ("redis", redis)):
            pid = pid_listening_on(_port_of(address))
            if pid:
                pids[name] = pid
        print(f"bench: stack up (instance {instance.id}, python {sys.version.split()[0]})", flush=True)
        yield BenchStack(stack, ports, naive_port, instance, import_instance, kafka, redis, pids, groups)
    finally:
        stack.stop()
        for each in (instance, import_instance):
            asyncio.run(forget_instance(own, each.id))


async def forget_instance(own: Infra, instance_id: str) -> None:
    """A run's instance gone again: its Redis state always (Redis outlives the run, and state lives for months: a
    Redis left with a few runs' contacts slows every scan of it, the test suite's included), and from someone else's
    broker its configuration too (a broker of the run's own goes whole)."""
    if own.kafka_started_here:
        redis = connect_url(own.redis, max_connections=2)
        try:
            await purge_instance(redis, instance_id)
        finally:
            await redis.aclose()
    else:
        await remove_instance(_connection(own.kafka), own.redis, instance_id)
