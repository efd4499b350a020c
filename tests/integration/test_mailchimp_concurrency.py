"""The shared Mailchimp connection limit on real Redis: two writer targets together never exceed 10 in flight.

The simulator answers the 11th simultaneous request of an account with 429, so `responses_429 == 0` under load is
the proof; the control case (each replica limiting only itself) shows the same load does cause 429s.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from component.simulators.mailchimp.mailchimp_testkit import DEMO_KEY, SimServer, sim_settings

from support.commands import sync_command
from tandem_devstack.processes import free_port
from tandem_shared.concurrency import LimiterUnavailable, RedisConcurrencyLimiter
from tandem_shared.contracts import InstanceConfig, SyncCommand, System, Trigger
from tandem_shared.instances import demo_instance
from tandem_shared.redis.client import connect_url
from tandem_shared.vendors.mailchimp.client import MailchimpClients
from tandem_writer.targets.mailchimp import MailchimpTarget

pytestmark = pytest.mark.integration

KEY_VAR = "TANDEM_TEST_MAILCHIMP_KEY"
WRITES_PER_REPLICA = 30


@pytest.fixture(scope="module")
def sim_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimServer]:
    with SimServer(sim_settings(tmp_path_factory.mktemp("mailchimp-sim-concurrency"))) as server:
        yield server


@pytest.fixture
async def sim(sim_server: SimServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim_server.base_url, timeout=10) as client:
        (await client.post("/_sim/reset")).raise_for_status()
        yield client


@pytest.fixture
def instance(sim_server: SimServer, monkeypatch: pytest.MonkeyPatch) -> InstanceConfig:
    monkeypatch.setenv(KEY_VAR, DEMO_KEY)
    base = demo_instance()
    connection = base.mailchimp.model_copy(
        update={"api_key": f"env:{KEY_VAR}", "api_base_url": f"{sim_server.base_url}/3.0"}
    )
    return base.model_copy(update={"id": "concurrency-test", "mailchimp": connection})


def limiter(redis_url: str, prefix: str, *, limit: int = 10, lease_s: float = 10.0) -> RedisConcurrencyLimiter:
    redis = connect_url(redis_url)
    return RedisConcurrencyLimiter(redis, limit=limit, lease_s=lease_s, max_wait_s=60, prefix=prefix, owns_client=True)


def command(email: str) -> SyncCommand:
    payload = {"email_address": email, "status_if_new": "subscribed", "merge_fields": {"FNAME": "Load"}}
    return sync_command(
        "concurrency-test",
        System.MAILCHIMP,
        payload,
        email=email,
        name=email,
        execution_id=email,
        event_id=email,
        key=email,
        trigger=Trigger.BACKFILL,
    )


async def drive(replicas: list[MailchimpTarget], instance: InstanceConfig) -> list[Any]:
    writes = [
        replica.write(command(f"load-{n}-{i}@example.com"), instance)
        for n, replica in enumerate(replicas)
        for i in range(WRITES_PER_REPLICA)
    ]
    return list(await asyncio.gather(*writes))


async def stats(sim: httpx.AsyncClient) -> dict[str, Any]:
    return (await sim.get("/_sim/stats")).json()


async def test_two_replicas_sharing_redis_never_cause_a_429(
    sim: httpx.AsyncClient, instance: InstanceConfig, redis_url: str
) -> None:
    (await sim.post("/_sim/controls", json={"route": "PUT member", "latency_ms": 200})).raise_for_status()
    prefix = f"test:{uuid.uuid4().hex}:"
    replicas = [MailchimpTarget(MailchimpClients(limiter=limiter(redis_url, prefix), timeout_s=30)) for _ in range(2)]
    try:
        outcomes = await drive(replicas, instance)
    finally:
        for replica in replicas:
            await replica.close()
    assert [o.error for o in outcomes if not o.ok] == []
    assert len(outcomes) == 2 * WRITES_PER_REPLICA
    observed = await stats(sim)
    assert observed["responses_429"] == 0
    assert observed["concurrency_rejections"] == 0
    assert observed["accounts"]["tandemdemo"]["peak_in_flight"] <= 10
    assert observed["requests"]["PUT member"] == {"200": 2 * WRITES_PER_REPLICA}


async def test_two_batching_replicas_sharing_redis_stay_within_10_connections_in_fewer_requests(
    sim: httpx.AsyncClient, instance: InstanceConfig, redis_url: str
) -> None:
    # Every route slow, batches included: slots stay taken and upserts queue up behind them.
    (await sim.post("/_sim/controls", json={"route": "*", "latency_ms": 200})).raise_for_status()
    prefix = f"test:{uuid.uuid4().hex}:"
    replicas = [
        MailchimpTarget(MailchimpClients(limiter=limiter(redis_url, prefix), timeout_s=30), batch_max=20)
        for _ in range(2)
    ]
    try:
        outcomes = await asyncio.gather(
            *(
                replica.write(command(f"batched-{n}-{i}@example.com"), instance)
                for i in range(4 * WRITES_PER_REPLICA)
                for n, replica in enumerate(replicas)
            )
        )
    finally:
        for replica in replicas:
            await replica.close()
    assert [o.error for o in outcomes if not o.ok] == []
    assert all(o.response is not None and o.response["email_address"].startswith("batched-") for o in outcomes)
    assert len({o.response["id"] for o in outcomes if o.response is not None}) == len(outcomes)
    observed = await stats(sim)
    assert observed["responses_429"] == 0
    assert observed["concurrency_rejections"] == 0
    assert observed["accounts"]["tandemdemo"]["peak_in_flight"] <= 10
    requests = observed["requests"]
    assert requests["POST batch subscribe"]["200"] >= 2
    sent = sum(sum(counts.values()) for route, counts in requests.items() if not route.startswith("GET"))
    assert sent < len(outcomes)


async def test_control_replicas_limiting_only_themselves_do_cause_429s(
    sim: httpx.AsyncClient, instance: InstanceConfig, redis_url: str
) -> None:
    (await sim.post("/_sim/controls", json={"route": "PUT member", "latency_ms": 200})).raise_for_status()
    replicas = [
        MailchimpTarget(MailchimpClients(limiter=limiter(redis_url, f"test:{uuid.uuid4().hex}:"), timeout_s=30))
        for _ in range(2)
    ]
    try:
        outcomes = await drive(replicas, instance)
    finally:
        for replica in replicas:
            await replica.close()
    observed = await stats(sim)
    assert observed["responses_429"] > 0
    throttled = [o.error for o in outcomes if o.error is not None]
    assert throttled and all(not e.permanent and e.error_class == "TooManyRequests" for e in throttled)


async def test_a_crashed_replicas_slot_comes_back_when_its_lease_expires(redis_url: str) -> None:
    prefix = f"test:{uuid.uuid4().hex}:"
    crashed, survivor = limiter(redis_url, prefix, limit=1, lease_s=0.5), limiter(redis_url, prefix, limit=1)
    try:
        # Granted, then never renewed nor released: what a replica killed mid-request leaves behind.
        assert await crashed.try_acquire("account", "crashed-lease")
        assert not await survivor.try_acquire("account", "probe")
        async with survivor.slot("account") as lease:
            assert await survivor.holders("account") == [lease.lease_id]
    finally:
        await crashed.close()
        await survivor.close()


async def test_a_running_request_keeps_its_slot_beyond_the_lease_time(redis_url: str) -> None:
    prefix = f"test:{uuid.uuid4().hex}:"
    holder, other = limiter(redis_url, prefix, limit=1, lease_s=1.5), limiter(redis_url, prefix, limit=1)
    try:
        async with holder.slot("account") as lease:
            await asyncio.sleep(4)  # longer than the lease: only renewal keeps it
            assert not await other.try_acquire("account", "probe")
            assert await holder.holders("account") == [lease.lease_id]
        assert await holder.holders("account") == []
    finally:
        await holder.close()
        await other.close()


async def test_a_slot_given_up_on_stays_taken_for_the_hold_time(redis_url: str) -> None:
    prefix = f"test:{uuid.uuid4().hex}:"
    shared = limiter(redis_url, prefix, limit=1)
    try:
        async with shared.slot("account") as lease:
            lease.keep_for(60)
        assert await shared.holders("account") == [lease.lease_id]
        assert not await shared.try_acquire("account", "probe")
    finally:
        await shared.close()


async def test_slots_are_counted_per_name(redis_url: str) -> None:
    shared = limiter(redis_url, f"test:{uuid.uuid4().hex}:", limit=1)
    try:
        assert await shared.try_acquire("account-a", "a")
        assert await shared.try_acquire("account-b", "b")
        assert not await shared.try_acquire("account-a", "a2")
    finally:
        await shared.close()


async def test_without_redis_no_slot_is_granted_and_the_write_is_transient(
    instance: InstanceConfig, tmp_path: Path
) -> None:
    unreachable = limiter(f"redis://127.0.0.1:{free_port()}/0", "test:")
    with pytest.raises(LimiterUnavailable):
        async with unreachable.slot("account"):
            pass
    target = MailchimpTarget(MailchimpClients(limiter=limiter(f"redis://127.0.0.1:{free_port()}/0", "test:")))
    try:
        outcome = await target.write(command("nobody@example.com"), instance)
    finally:
        await target.close()
        await unreachable.close()
    assert outcome.error is not None
    assert (outcome.error.permanent, outcome.error.error_class) == (False, "LimiterUnavailable")
