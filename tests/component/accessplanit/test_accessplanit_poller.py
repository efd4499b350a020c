"""The catch-up poller against the simulator, with the real Redis for claims, cursor and locks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from component.accessplanit.accessplanit_fixtures import RecordingPublisher, control, create_user, instance
from component.simulators.accessplanit.accessplanit_testkit import INTEGRATION_KEY, SimServer
from redis.asyncio import Redis

from tandem_ingest.accessplanit_changes import ApiChangedUsers
from tandem_ingest.dedupe import Claim, RedisEventClaims
from tandem_ingest.domain.normalize.accessplanit import parse_webhook, webhook_event
from tandem_ingest.domain.poll_report import PollReport
from tandem_ingest.intake import Intake
from tandem_ingest.poll_state import PollerLocks, RedisCursorStore
from tandem_ingest.poller import AccessplanitPoller, PollerConfig
from tandem_shared.contracts import (
    ChangeEvent,
    ChangeKind,
    Direction,
    Headers,
    InstanceConfig,
    Stage,
    TraceRecord,
    TraceStatus,
    Trigger,
    utcnow,
)
from tandem_shared.instances import StaticInstanceRegistry
from tandem_shared.redis.keys import ingest_claim_key, instance_key_patterns, poller_cursor_key
from tandem_shared.redis.purge import purge_instance
from tandem_shared.vendors.accessplanit.client import AccessplanitClients
from tandem_shared.vendors.accessplanit.settings import AccessplanitSettings


@dataclass
class Tandem:
    """What one ingest process would hold; a second `Tandem` on the same Redis is another replica or a restart."""

    poller: AccessplanitPoller
    publisher: RecordingPublisher
    intake: Intake
    locks: PollerLocks
    clients: AccessplanitClients
    traces: list[TraceRecord] = field(default_factory=list)

    async def poll(self) -> PollReport:
        [report] = await self.poller.poll_all()
        return report


@pytest.fixture
def tenant(ap_server: SimServer, sim: httpx.AsyncClient) -> InstanceConfig:
    return instance(ap_server.base_url)


@pytest.fixture
async def start(redis: Redis, tenant: InstanceConfig) -> AsyncIterator[Any]:
    started: list[Tandem] = []

    async def start_tandem(
        *,
        page_size: int = 100,
        overlap_s: float = 0.0,
        instances: list[InstanceConfig] | None = None,
        publisher: RecordingPublisher | None = None,
        registry: StaticInstanceRegistry | None = None,
        **budget: Any,
    ) -> Tandem:
        publisher = publisher or RecordingPublisher()
        clients = AccessplanitClients(redis, AccessplanitSettings(http_timeout_s=2, budget_max_wait_s=0.5, **budget))
        intake = Intake(publisher, RedisEventClaims(redis, pending_ttl_s=30, done_ttl_s=600))
        locks = PollerLocks(redis, ttl_s=30)
        traces: list[TraceRecord] = []

        async def trace(record: TraceRecord) -> None:
            traces.append(record)

        poller = AccessplanitPoller(
            registry=registry or StaticInstanceRegistry(instances or [tenant]),
            users=ApiChangedUsers(clients),
            intake=intake,
            cursors=RedisCursorStore(redis),
            locks=locks,
            trace=trace,
            config=PollerConfig(interval_s=0.1, page_size=page_size, max_pages=10, overlap_s=overlap_s),
        )
        tandem = Tandem(poller, publisher, intake, locks, clients, traces)
        started.append(tandem)
        return tandem

    yield start_tandem
    for tandem in started:
        await tandem.locks.release_all()
        await tandem.clients.close()


async def test_the_first_round_starts_at_the_newest_change_and_later_rounds_publish_what_changed_since(
    start: Any, admin: httpx.AsyncClient
) -> None:
    before = await create_user(admin, Email="before@example.com")
    tandem = await start()
    first = await tandem.poll()
    assert first.initialized
    assert first.cursor_after is not None and first.cursor_after.user_id == before["ID"]
    assert tandem.publisher.published == [] and tandem.traces == []

    created = await create_user(admin, Email="new@example.com")
    (await admin.put(f"/User/{before['ID']}", json={"Surname": "Changed"})).raise_for_status()
    second = await tandem.poll()
    published = tandem.publisher.published
    assert [(p.event.identity.accessplanit_user_id, p.event.kind) for p in published] == [
        (created["ID"], ChangeKind.CREATED),
        (before["ID"], ChangeKind.UPDATED),
    ]
    assert all(p.event.trigger is Trigger.POLL and p.stage is Stage.POLLER for p in published)
    assert published[1].event.fields["Surname"] == "Changed"
    assert second.found_changes

    [trace] = tandem.traces
    assert (trace.stage, trace.status, trace.trigger) == (Stage.POLLER, TraceStatus.SUCCEEDED, Trigger.POLL)
    assert trace.summary == (
        "Catch-up poll read 2 changed user(s): 2 not received by webhook (published now), 0 already received"
    )
    assert trace.output.data_out is not None
    assert trace.output.data_out["published_event_ids"] == [p.event.event_id for p in published]

    third = await tandem.poll()
    assert (third.read, third.found_changes) == (0, False)
    assert len(tandem.publisher.published) == 2
    assert len(tandem.traces) == 1  # quiet rounds are not traced


async def test_pages_are_followed_to_the_end_in_order(start: Any, admin: httpx.AsyncClient) -> None:
    tandem = await start(page_size=2)
    await tandem.poll()
    made = [await create_user(admin, Email=f"u{n}@example.com") for n in range(5)]
    report = await tandem.poll()
    assert report.read == 5
    assert [p.event.identity.accessplanit_user_id for p in tandem.publisher.published] == [u["ID"] for u in made]


async def test_what_a_webhook_already_delivered_is_not_published_again(start: Any, admin: httpx.AsyncClient) -> None:
    tandem = await start(overlap_s=2.0)
    await tandem.poll()
    user = await create_user(admin)
    delivery = parse_webhook(method="POST", body={"Module": "User", "Data": user})
    from_webhook = webhook_event(delivery, user, instance_id="ap-test", execution_id="w", received_at=utcnow())
    assert await tandem.intake.submit(from_webhook, stage=Stage.INGEST) is Claim.NEW

    report = await tandem.poll()
    again = await tandem.poll()  # the overlap re-reads it: still recognized
    assert (report.read, report.duplicates, report.published) == (1, 1, [])
    assert again.duplicates == 1
    assert [p.event.trigger for p in tandem.publisher.published] == [Trigger.WEBHOOK]
    assert tandem.traces[0].summary.endswith("0 not received by webhook (published now), 1 already received")


async def test_the_cursor_survives_a_restart(start: Any, admin: httpx.AsyncClient) -> None:
    first = await start()
    await first.poll()
    await create_user(admin, Email="one@example.com")
    await first.poll()
    await first.locks.release_all()  # graceful shutdown

    await create_user(admin, Email="two@example.com")
    restarted = await start()
    report = await restarted.poll()
    assert not report.initialized
    assert [p.event.identity.email for p in restarted.publisher.published] == ["two@example.com"]


async def test_an_api_outage_stops_the_round_and_the_next_one_loses_nothing(
    start: Any, admin: httpx.AsyncClient, sim: httpx.AsyncClient
) -> None:
    tandem = await start(page_size=2)
    await tandem.poll()
    made = [await create_user(admin, Email=f"u{n}@example.com") for n in range(5)]
    await control(sim, faults=[{"status": 503, "count": 1, "method": "GET"}])
    failed = await tandem.poll()
    assert failed.stopped_early is not None and "answered 503" in failed.stopped_early
    [trace] = tandem.traces
    assert trace.status is TraceStatus.FAILED
    assert trace.summary == "Catch-up poll failed (will be retried next round)"
    assert trace.error is not None and not trace.error.permanent

    await tandem.poll()
    ids = [p.event.identity.accessplanit_user_id for p in tandem.publisher.published]
    assert ids == [u["ID"] for u in made]


async def test_kafka_down_mid_round_gives_the_claims_back_and_the_next_round_publishes_each_change_once(
    start: Any, admin: httpx.AsyncClient
) -> None:
    publisher = RecordingPublisher()
    tandem = await start(publisher=publisher)
    await tandem.poll()
    made = [await create_user(admin, Email=f"k{n}@example.com") for n in range(3)]
    publisher.down = True
    stopped = await tandem.poll()
    assert stopped.stopped_early is not None and "KafkaUnavailable" in stopped.stopped_early
    publisher.down = False
    await tandem.poll()
    assert [p.event.identity.accessplanit_user_id for p in publisher.published] == [u["ID"] for u in made]


async def test_only_one_replica_polls_an_instance(start: Any, admin: httpx.AsyncClient) -> None:
    first, second = await start(), await start()
    await first.poll()
    await create_user(admin)
    assert await second.poller.poll_all() == []
    await first.poll()
    await first.locks.release_all()
    assert len(await second.poller.poll_all()) == 1
    assert len(first.publisher.published) == 1 and second.publisher.published == []


async def test_changes_made_by_tandems_own_api_user_are_marked(
    start: Any, admin: httpx.AsyncClient, ap_server: SimServer
) -> None:
    tandem = await start()
    await tandem.poll()
    async with httpx.AsyncClient(
        base_url=f"{ap_server.base_url}/api/v2", headers={"Authorization": f"Bearer {INTEGRATION_KEY}"}
    ) as as_tandem:
        body = {"Forenames": "Echo", "Surname": "Write", "Email": "echo@example.com", "MainCompanyID": "1"}
        (await as_tandem.post("/User", json=body)).raise_for_status()
    await tandem.poll()
    [published] = tandem.publisher.published
    assert published.event.updated_by_id == "900001"
    assert published.headers == {Headers.ORIGIN: "tandem"}


async def test_an_exhausted_budget_postpones_the_round_without_losing_the_change(
    start: Any, admin: httpx.AsyncClient
) -> None:
    tandem = await start(requests_per_window=2, window_s=1.5)
    await tandem.poll()  # 1 request
    await create_user(admin)
    await tandem.poll()  # the second: reads the change
    assert len(tandem.publisher.published) == 1
    await create_user(admin, Email="later@example.com")
    held = await tandem.poll()
    assert held.stopped_early is not None and "request budget is used up" in held.stopped_early
    assert tandem.traces[-1].error is not None and tandem.traces[-1].error.error_class == "RateBudgetExhausted"


async def test_instances_that_do_not_sync_accessplanit_changes_are_not_polled(
    start: Any, tenant: InstanceConfig, sim: httpx.AsyncClient
) -> None:
    one_way = tenant.model_copy(update={"direction": Direction.MAILCHIMP_TO_ACCESSPLANIT})
    tandem = await start(instances=[one_way])
    assert await tandem.poller.poll_all() == []
    stats = (await sim.get("/_sim/stats")).json()
    assert not any(r["route"].startswith("/api/v2/User") for r in stats["requests"])


@dataclass
class DeletedWhilePublishing(RecordingPublisher):
    """Deletes the instance as `tandem instances delete` would (tombstone seen, Redis purged) once its first change
    is published, in the middle of a round."""

    registry: StaticInstanceRegistry = field(default_factory=lambda: StaticInstanceRegistry([]))
    redis: Redis | None = None

    async def publish(self, event: ChangeEvent, **kwargs: Any) -> None:
        await super().publish(event, **kwargs)
        if len(self.published) == 1 and self.redis is not None:
            await self.registry.delete(event.instance_id)
            await purge_instance(self.redis, event.instance_id)


async def test_a_deleted_instance_ends_its_round_at_once_and_is_polled_no_more(
    start: Any, admin: httpx.AsyncClient, redis: Redis, tenant: InstanceConfig
) -> None:
    registry = StaticInstanceRegistry([tenant])
    publisher = DeletedWhilePublishing(registry=registry, redis=redis)
    tandem = await start(page_size=2, registry=registry, publisher=publisher)
    await tandem.poll()
    assert await redis.exists(poller_cursor_key(tenant.id))
    for n in range(5):
        await create_user(admin, Email=f"gone{n}@example.com")

    [report] = await tandem.poller.poll_all()
    assert report.stopped_early == "the instance was deleted"
    assert (report.read, len(publisher.published)) == (1, 1)  # nothing of it is read or published after the delete
    # Nothing of the instance is written back after the purge (a re-created id starts clean) but the claim of the
    # change being published at that moment, which expires.
    [in_flight] = publisher.published
    left = [key for pattern in instance_key_patterns(tenant.id) async for key in redis.scan_iter(match=pattern)]
    assert left == [ingest_claim_key(tenant.id, in_flight.event.event_id)]
    assert await redis.ttl(left[0]) > 0

    assert await tandem.poller.poll_all() == []
    assert len(publisher.published) == 1
