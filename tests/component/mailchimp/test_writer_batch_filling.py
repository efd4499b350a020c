"""Group commit under a trickle: upserts arriving one by one while a request is out wait for a sender already there
(or for a request's worth) instead of each starting a request of its own, so a backfill's writes go out in full
batches; nothing waits when nothing is out."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from component.mailchimp.test_writer_batching import BATCH, PUT, batching_target, emails, requests
from component.mailchimp.test_writer_target import command, control, ok
from component.simulators.mailchimp.mailchimp_testkit import DEMO_KEY

from support.waiting import eventually
from tandem_shared.concurrency import LocalConcurrencyLimiter
from tandem_shared.contracts import InstanceConfig
from tandem_shared.vendors.mailchimp.client import limiter_name
from tandem_writer.domain.outcome import WriteOutcome
from tandem_writer.targets.mailchimp import MailchimpTarget

pytestmark = pytest.mark.usefixtures("mailchimp_keys")


async def trickle(
    target: MailchimpTarget, instance: InstanceConfig, limiter: LocalConcurrencyLimiter, addresses: list[str]
) -> list[WriteOutcome]:
    """A first upsert, then `addresses` one by one (each queued before the next) while its request is out."""
    name = limiter_name(instance.mailchimp.api_root(DEMO_KEY), DEMO_KEY)

    async def out() -> bool:
        return limiter.in_use(name) == 1

    first = asyncio.create_task(target.write(command("first@example.com"), instance))
    await eventually(out, interval=0.01)
    later = []
    for address in addresses:
        later.append(asyncio.create_task(target.write(command(address), instance)))
        await asyncio.sleep(0.01)  # its own loop iterations: as the writer's commands arrive, not gathered
    return list(await asyncio.gather(first, *later))


async def test_upserts_arriving_while_a_request_is_out_go_out_together_after_it(
    mc_sim: httpx.AsyncClient, limiter: LocalConcurrencyLimiter, instance: InstanceConfig
) -> None:
    await control(mc_sim, route="*", latency_ms=1000)
    target = batching_target(limiter, connections=10, batch_max=200)
    try:
        for outcome in await trickle(target, instance, limiter, emails("trickle", 5)):
            ok(outcome)
    finally:
        await target.close()
    # Not five more requests on five idle connections: the five wait for the first and share one batch.
    assert await requests(mc_sim) == {PUT: {"200": 1}, BATCH: {"200": 1}}


async def test_a_request_s_worth_queued_while_a_request_is_out_goes_at_once(
    mc_sim: httpx.AsyncClient, limiter: LocalConcurrencyLimiter, instance: InstanceConfig
) -> None:
    await control(mc_sim, route="*", latency_ms=1000)
    target = batching_target(limiter, connections=10, batch_max=8)  # a request's worth: 8 // 4 = 2
    try:
        for outcome in await trickle(target, instance, limiter, emails("worth", 4)):
            ok(outcome)
    finally:
        await target.close()
    assert await requests(mc_sim) == {PUT: {"200": 1}, BATCH: {"200": 2}}
    assert (await mc_sim.get("/_sim/stats")).json()["accounts"]["tandemdemo"]["peak_in_flight"] == 3
