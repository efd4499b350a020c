"""The services and simulators as real processes on free loopback ports, for integration tests.

Each stack gets its own instance file, data dir and consumer groups, so it never shares work with `make run`
or another test stack on the same broker.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.console_access import console_env
from support.groups import start_at_end
from support.kafka import connect
from tandem_devstack import demo
from tandem_devstack.processes import free_port
from tandem_devstack.stack import Ports, Stack, service_specs, stack_env
from tandem_shared.contracts import InstanceConfig
from tandem_shared.contracts.topics import CHANGES, COMMANDS, COMMANDS_RETRY
from tandem_shared.instance_store import put_instance, remove_instance
from tandem_shared.instances import demo_instance


@dataclass
class RunningStack:
    stack: Stack
    ports: Ports
    instance: InstanceConfig
    kafka: str
    redis: str

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{getattr(self.ports, service)}"


async def start_groups_at_end(kafka: str, groups: Mapping[str, list[str]]) -> None:
    for group_id, topics in groups.items():
        await start_at_end(kafka, group_id, topics)


def make_test_instance(ports: Ports, instance_id: str, **changes: Any) -> InstanceConfig:
    base = demo_instance()
    return base.model_copy(
        update={
            **changes,
            "id": instance_id,
            "name": f"test {instance_id}",
            "mailchimp": base.mailchimp.model_copy(
                update={"api_base_url": f"http://127.0.0.1:{ports.mailchimp_sim}/3.0"}
            ),
            "accessplanit": base.accessplanit.model_copy(
                update={"base_url": f"http://127.0.0.1:{ports.accessplanit_sim}"}
            ),
        }
    )


@contextmanager
def running_stack(
    kafka: str,
    redis: str,
    tmp: Path,
    services: list[str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    service_env: Mapping[str, Mapping[str, str]] | None = None,
    instance_changes: Mapping[str, Any] | None = None,
) -> Iterator[RunningStack]:
    """`service_env`: settings of one service over the stack's, by service name (its Kafka user, say);
    `instance_changes`: fields of the test instance other than the demo's (its mappings, say)."""
    ports = Ports(*(free_port() for _ in range(6)))
    suffix = uuid.uuid4().hex[:8]
    instance = make_test_instance(ports, f"t-{suffix}", **(instance_changes or {}))
    asyncio.run(put_instance(connect(kafka), instance))
    mapper_group, writer_group = f"tandem-mapper-{suffix}", f"tandem-writer-{suffix}"
    # A new group would otherwise start at the beginning of topics shared with every earlier stack (and `make run`)
    # on this broker: it would redo the work of every instance still registered there (the demo instance, stacks
    # that were killed before they could unregister theirs), writing to their simulators or their dead ports and
    # forwarding each failure to a retry tier again. That backlog grows with every run and holds this stack's own
    # retries behind it for minutes.
    asyncio.run(start_groups_at_end(kafka, {mapper_group: [CHANGES], writer_group: [COMMANDS, *COMMANDS_RETRY]}))
    env = stack_env(
        kafka=kafka,
        redis=redis,
        ports=ports,
        data_dir=tmp,
        extra={
            "TANDEM_MAPPER_GROUP_ID": mapper_group,
            "TANDEM_WRITER_GROUP_ID": writer_group,
            "TANDEM_MAPPER_PORT": str(ports.mapper),
            "TANDEM_WRITER_PORT": str(ports.writer),
            **console_env(tmp / "console"),
            **(extra_env or {}),
        },
    )
    stack = Stack(env=env, log_dir=tmp / "logs")
    try:
        started = set()
        for spec in service_specs(ports):
            if services is None or spec.name in services:
                spec.env.update((service_env or {}).get(spec.name, {}))
                stack.start(spec)
                started.add(spec.name)
        endpoints = demo.Endpoints.from_env(env)
        if {"ingest", "accessplanit-sim"} <= started:
            demo.register_accessplanit_webhook(endpoints, instance.id)
        if {"ingest", "mailchimp-sim"} <= started:
            instance = demo.register_mailchimp_webhook(endpoints, kafka, tmp / "secrets", instance)
        yield RunningStack(stack, ports, instance, kafka, redis)
    finally:
        stack.stop()
        # Other consumers on this broker (every later ingest poller) follow the registry: without its instance, this
        # stack's records still on the topics are skipped there and its dead ports are not polled. Deleted as an
        # operator deletes one (`tandem instances delete`): its Redis state goes too.
        asyncio.run(remove_instance(connect(kafka), redis, instance.id))
