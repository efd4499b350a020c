"""Changes made while Tandem was down reach tandem.changes exactly once: the poller catches up, and the vendor's
late webhook retries are recognized as the same changes (real Kafka, Redis, simulator and ingest processes)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from support.stack import RunningStack, running_stack
from support.topics import read_all, wait_for_records
from support.waiting import eventually
from tandem_devstack.stack import DEMO_ACCESSPLANIT_ADMIN_KEY, DEMO_ACCESSPLANIT_API_KEY, service_specs
from tandem_shared.contracts import ChangeEvent, Stage, TraceRecord, Trigger
from tandem_shared.contracts.topics import CHANGES, TRACE
from tandem_shared.redis.client import connect_url

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    tmp: Path = tmp_path_factory.mktemp("ap-poller")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TANDEM_INGEST_POLL_INTERVAL_S", "1")
        with running_stack(kafka_bootstrap, redis_url, tmp, services=["accessplanit-sim", "ingest"]) as running:
            yield running


async def test_users_created_while_tandem_was_down_are_published_once_each(stack: RunningStack) -> None:
    sim = stack.url("accessplanit_sim")
    instance_id = stack.instance.id
    redis = connect_url(stack.redis)
    try:
        # Tandem has run before: its poller has a cursor.
        await eventually(lambda: redis.exists(f"tandem:poller:{instance_id}:cursor"))
        stack.stack.stop("ingest")

        async with httpx.AsyncClient(base_url=sim, timeout=10) as client:
            # accessplanit keeps retrying (every 2 s, 10 times) while Tandem is away.
            controls = {"webhooks_failing": True, "webhook_retry_delays": [2.0] * 10}
            (await client.post("/_sim/controls", json=controls)).raise_for_status()
            admin = {"Authorization": f"Bearer {DEMO_ACCESSPLANIT_ADMIN_KEY}"}
            suffix = uuid.uuid4().hex[:6]
            made = []
            for name in ("Ada", "Grace", "Katherine"):
                body = {
                    "Forenames": name,
                    "Surname": "Down",
                    "Email": f"{name}.{suffix}@example.com",
                    "MainCompanyID": "2",
                }
                response = await client.post("/api/v2/User", json=body, headers=admin)
                response.raise_for_status()
                made.append(response.json()["ID"])

            [ingest] = [s for s in service_specs(stack.ports) if s.name == "ingest"]
            stack.stack.start(ingest)

            def ours(event: ChangeEvent) -> bool:
                return event.instance_id == instance_id and event.identity.accessplanit_user_id in made

            caught_up = await wait_for_records(
                stack.kafka, CHANGES, ChangeEvent, where=ours, until=lambda found: len(found) >= 3
            )
            assert {e.trigger for e in caught_up} == {Trigger.POLL}

            # Now the webhooks get through: each late delivery is the same change and is not published again.
            (await client.post("/_sim/controls", json={"webhooks_failing": False})).raise_for_status()
            api = {"Authorization": f"Bearer {DEMO_ACCESSPLANIT_API_KEY}"}

            async def deliveries_finished() -> list[dict[str, object]] | None:
                rows = (await client.get("/api/v2/WebhookInstance", headers=api)).json()["results"]
                mine = [r for r in rows if r["ObjectID"] in made]
                done = len(mine) == 3 and all(r["Status"] in ("Succeeded", "Failed") for r in mine)
                return mine if done else None

            deliveries = await eventually(deliveries_finished, timeout=60)
            assert {r["Status"] for r in deliveries} == {"Succeeded"}

        # The poller has read past all three again since (its cursor is beyond the last one).
        await eventually(lambda: poller_passed(redis, instance_id, made[-1]))
        events = await read_all(stack.kafka, CHANGES, ChangeEvent, where=ours)
        assert sorted(e.identity.accessplanit_user_id for e in events) == sorted(made)
        assert len({e.event_id for e in events}) == 3

        polls = await read_all(
            stack.kafka,
            TRACE,
            TraceRecord,
            where=lambda r: r.instance_id == instance_id and r.stage is Stage.POLLER and r.accessplanit_user_id is None,
        )
        assert any("3 not received by webhook" in r.summary for r in polls), [r.summary for r in polls]
    finally:
        await redis.aclose()


async def poller_passed(redis: Redis, instance_id: str, user_id: str) -> bool:
    raw = await redis.get(f"tandem:poller:{instance_id}:cursor")
    return raw is not None and f'"user_id":"{user_id}"' in raw
