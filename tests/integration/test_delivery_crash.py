"""Crashes and restarts in the middle of a stream of changes, on the real broker: the writer killed, the mapper
killed, the broker restarted, the writer stopped with SIGTERM. Afterwards every change has had exactly one effect
on the Mailchimp audience, nothing is lost and nothing is left waiting on a retry tier."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from aiokafka import TopicPartition

from support.delivery import (
    FAST_DELIVERY_ENV,
    Sims,
    applied,
    by_user,
    delivery_traces,
    left_on_retry_tiers,
    parked,
    unique_email,
)
from support.groups import committed_offsets, group_state
from support.stack import RunningStack, running_stack
from support.waiting import eventually
from tandem_devstack import infra
from tandem_devstack.stack import ServiceSpec
from tandem_shared.contracts import TraceStatus
from tandem_shared.contracts.topics import COMMANDS, COMMANDS_DLQ

pytestmark = pytest.mark.integration

ENV = {
    **FAST_DELIVERY_ENV,
    # Writes are slowed down on purpose here; they must not time out.
    "TANDEM_WRITER_HTTP_TIMEOUT_S": "10",
    # Longer than a writer restart takes, so the restarted writer meets the claims its predecessor left behind.
    "TANDEM_WRITER_INFLIGHT_TTL_S": "15",
    # The broker restart takes longer than the simulator's default webhook retries (31 s in all).
    "ACCESSPLANIT_SIM_WEBHOOK_RETRY_DELAYS": "[1,2,4,8,15,30,60,60]",
}


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    tmp: Path = tmp_path_factory.mktemp("crash")
    with running_stack(kafka_bootstrap, redis_url, tmp, extra_env=ENV) as running:
        yield running


@pytest.fixture
async def sims(stack: RunningStack) -> AsyncIterator[Sims]:
    async with httpx.AsyncClient(timeout=10) as client:
        sims = Sims(stack, client)
        yield sims
        await sims.clear_controls()


def at_least(probe: Callable[[], Awaitable[int]], minimum: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await probe() >= minimum

    return check


class Stream:
    """Contacts created and edited in accessplanit, and what the audience must finally show for each."""

    def __init__(self, sims: Sims, prefix: str) -> None:
        self.sims = sims
        self.prefix = prefix
        self.expected: dict[str, tuple[str, str]] = {}  # user id → (email, first name)

    async def create(self, count: int, pause_s: float = 0.0) -> None:
        for _ in range(count):
            email = unique_email(f"{self.prefix}{len(self.expected)}")
            name = f"{self.prefix.title()}{len(self.expected)}"
            self.expected[await self.sims.create_user(email, name)] = (email, name)
            await asyncio.sleep(pause_s)

    async def rename(self, user_ids: list[str]) -> None:
        for user_id in user_ids:
            email, name = self.expected[user_id]
            await self.sims.update_user(user_id, Forenames=f"{name}Renamed")
            self.expected[user_id] = (email, f"{name}Renamed")

    async def members_written(self) -> int:
        # A snapshot: the stream may still be adding users while this awaits the simulator.
        found = [await self.sims.member(email) for email, _ in list(self.expected.values())]
        return sum(1 for m in found if m is not None)

    async def all_applied(self) -> bool:
        for email, name in list(self.expected.values()):
            member = await self.sims.member(email)
            if member is None or member["merge_fields"]["FNAME"] != name:
                return False
        return True


async def assert_exactly_once(stack: RunningStack, stream: Stream) -> None:
    """Each change applied once: the audience shows the newest values; every command is recorded as applied or
    was dropped as superseded by a newer change; no command was written successfully twice; none is
    dead-lettered or still waiting on a retry tier."""
    await eventually(stream.all_applied, timeout=180, interval=1.0)
    commands = [
        p.command
        for p in await parked(stack.kafka, [COMMANDS], stack.instance.id)
        if p.command.identity.accessplanit_user_id in stream.expected
    ]
    distinct = {c.idempotency_key: c for c in commands}
    assert len(distinct) >= len(stream.expected)
    traces = by_user(await delivery_traces(stack.kafka, stack.instance.id))
    recorded = await applied(stack.redis, list(distinct.values()))
    for key, command in distinct.items():
        user = command.identity.accessplanit_user_id or ""
        superseded = any(
            r.summary.startswith("Superseded") and r.output.data_in == command.payload for r in traces.get(user, [])
        )
        assert recorded[key] or superseded, f"user {user}: {command.payload} neither applied nor superseded"
    for user_id in stream.expected:
        payloads = [r.output.data_in for r in traces.get(user_id, []) if r.status is TraceStatus.SUCCEEDED]
        assert len(payloads) == len({repr(p) for p in payloads}), f"user {user_id} written twice with {payloads}"
    assert await parked(stack.kafka, [COMMANDS_DLQ], stack.instance.id) == []

    async def retry_tiers_drained() -> bool:
        group = stack.stack.env["TANDEM_WRITER_GROUP_ID"]
        return await left_on_retry_tiers(stack.kafka, group, stack.instance.id) == []

    assert await eventually(retry_tiers_drained, timeout=60)


def spec_of(stack: RunningStack, name: str) -> ServiceSpec:
    return next(s for s in stack.stack.running if s.spec.name == name).spec


async def test_writer_killed_mid_stream(stack: RunningStack, sims: Sims) -> None:
    await sims.control(latency_ms=1000)
    stream = Stream(sims, "wkill")
    # Changes keep arriving while earlier ones are written (a backlog batched all at once could finish before the
    # kill), so the writer is killed with writes in flight: claimed, maybe applied, not recorded.
    creating = asyncio.create_task(stream.create(15, pause_s=0.2))
    await eventually(at_least(stream.members_written, 3), timeout=60)
    await eventually(at_least(sims.in_flight, 1), timeout=60, interval=0.05)
    spec = stack.stack.kill("writer")
    await creating
    await stream.rename(list(stream.expected)[:5])
    await asyncio.to_thread(stack.stack.start, spec)
    await assert_exactly_once(stack, stream)


async def test_mapper_killed_mid_stream(stack: RunningStack, sims: Sims) -> None:
    stream = Stream(sims, "mkill")
    creating = asyncio.create_task(stream.create(15, pause_s=0.1))
    await eventually(at_least(stream.members_written, 3), timeout=60)
    spec = stack.stack.kill("mapper")
    await creating
    await stream.rename(list(stream.expected)[-5:])
    await asyncio.to_thread(stack.stack.start, spec)
    await assert_exactly_once(stack, stream)


async def test_broker_restarted_mid_stream(stack: RunningStack, sims: Sims) -> None:
    await sims.control(latency_ms=200)
    stream = Stream(sims, "brestart")
    # Changes keep coming while the broker is down: ingest answers 503 and accessplanit delivers them again later.
    creating = asyncio.create_task(stream.create(14, pause_s=1.0))
    await eventually(at_least(stream.members_written, 2), timeout=60)
    try:
        await asyncio.to_thread(infra.restart_kafka)
    except RuntimeError as exc:
        creating.cancel()
        pytest.skip(f"the broker is not the devstack's: {exc}")
    await creating
    await stream.rename(list(stream.expected)[:4])
    await assert_exactly_once(stack, stream)


async def test_sigterm_lets_the_write_in_flight_finish_commits_it_and_leaves_the_group(
    stack: RunningStack, sims: Sims
) -> None:
    group = stack.stack.env["TANDEM_WRITER_GROUP_ID"]
    await sims.control(latency_ms=3000)
    stream = Stream(sims, "sigterm")
    await stream.create(1)
    [user_id] = stream.expected
    await eventually(at_least(sims.in_flight, 1), timeout=60, interval=0.05)
    spec = spec_of(stack, "writer")
    log = stack.stack.log_dir / "writer.log"
    log_before = log.read_text(errors="replace")
    exit_code = await asyncio.to_thread(stack.stack.terminate, "writer")
    # uvicorn re-raises the signal it handled once shutdown is complete, so the status says SIGTERM, not SIGKILL.
    assert exit_code in (0, -signal.SIGTERM)
    shutdown_log = log.read_text(errors="replace")[len(log_before) :]
    assert "Application shutdown complete" in shutdown_log
    assert "did not finish within the grace period" not in shutdown_log
    assert await stream.all_applied(), "the write in flight finished before the writer exited"
    [command] = [
        p
        for p in await parked(stack.kafka, [COMMANDS], stack.instance.id)
        if p.command.identity.accessplanit_user_id == user_id
    ]
    committed = await committed_offsets(stack.kafka, group)
    assert committed[TopicPartition(COMMANDS, command.record.partition)] == command.record.offset + 1
    assert await group_state(stack.kafka, group) == ("Empty", 0)
    traces = by_user(await delivery_traces(stack.kafka, stack.instance.id))[user_id]
    [succeeded] = [r for r in traces if r.status is TraceStatus.SUCCEEDED]
    assert succeeded.attempt == 1
    await asyncio.to_thread(stack.stack.start, spec)
