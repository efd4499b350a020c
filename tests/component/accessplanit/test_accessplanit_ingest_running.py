"""Ingest served for real (uvicorn, lifespan): the simulator's own deliveries, and a dead Kafka broker."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from component.accessplanit.accessplanit_fixtures import (
    AppServer,
    RecordingPublisher,
    control,
    create_user,
    instance,
    signed,
)
from component.simulators.accessplanit.accessplanit_testkit import INTEGRATION_KEY, SimServer

from support.waiting import eventually
from tandem_devstack.processes import free_port
from tandem_ingest.entrypoint import create_app
from tandem_ingest.settings import IngestSettings
from tandem_shared.contracts import ChangeKind
from tandem_shared.instances import StaticInstanceRegistry


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def running_ingest(
    ap_server: SimServer, sim: httpx.AsyncClient, redis: object, redis_db_url: str, publisher: RecordingPublisher
) -> Iterator[AppServer]:
    app = create_app(
        # Events go to the recording publisher; the broker address only has to be one nobody listens on.
        IngestSettings(
            kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
            redis_url=redis_db_url,
            poller_enabled=False,
            log_json=False,
        ),
        StaticInstanceRegistry([instance(ap_server.base_url)]),
        publisher=publisher,
    )
    with AppServer(app) as server:
        yield server


async def register_webhook(sim: httpx.AsyncClient, target: str) -> None:
    response = await sim.post(
        "/api/v2/Webhook",
        headers={"Authorization": f"Bearer {INTEGRATION_KEY}"},
        json={
            "Module": "User",
            "Events": ["created", "updated", "deleted"],
            "TargetUrl": target,
            "Secret": "component-test-webhook-secret",
        },
    )
    response.raise_for_status()


async def deliveries_done(sim: httpx.AsyncClient) -> list[dict[str, object]] | None:
    found = (await sim.get("/api/v2/WebhookInstance", headers={"Authorization": f"Bearer {INTEGRATION_KEY}"})).json()
    rows = found["results"]
    return rows if rows and all(r["Status"] in ("Succeeded", "Failed") for r in rows) else None


@pytest.mark.parametrize("payload_mode", ["full", "ids"])
async def test_the_simulators_deliveries_become_events_in_both_payload_modes(
    running_ingest: AppServer,
    sim: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    publisher: RecordingPublisher,
    payload_mode: str,
) -> None:
    # The ap-test instance verifies signatures: signing is the simulator's opt-in (accessplanit documents none).
    await control(sim, webhook_payload_mode=payload_mode, webhook_signing_enabled=True)
    await register_webhook(sim, f"{running_ingest.base_url}/webhooks/accessplanit/ap-test")
    user = await create_user(admin)
    updated = (await admin.put(f"/User/{user['ID']}", json={"Surname": "King"})).json()

    rows = await eventually(lambda: deliveries_done(sim))
    assert {r["Status"] for r in rows} == {"Succeeded"}
    events = publisher.events()
    assert all(e.identity.accessplanit_user_id == user["ID"] for e in events)
    assert len({e.event_id for e in events}) == len(events)
    if payload_mode == "full":
        assert {e.kind for e in events} == {ChangeKind.CREATED, ChangeKind.UPDATED}
        assert {e.fields["DateUpdated"] for e in events} == {user["DateUpdated"], updated["DateUpdated"]}
    else:
        # Each delivery is completed by reading the user; a read after the update sees the update, so the
        # "created" delivery may carry the same state as the "updated" one: that state is published once.
        assert 1 <= len(events) <= 2
        assert any(e.fields["Surname"] == "King" for e in events)
        assert all(e.fields == updated for e in events if e.fields["DateUpdated"] == updated["DateUpdated"])


async def test_with_kafka_unreachable_ingest_starts_answers_503_and_is_not_ready(
    ap_server: SimServer, sim: httpx.AsyncClient, redis: object, redis_db_url: str
) -> None:
    dead_broker = f"127.0.0.1:{free_port()}"
    app = create_app(
        IngestSettings(
            kafka_bootstrap_servers=dead_broker, redis_url=redis_db_url, poller_enabled=False, log_json=False
        ),
        StaticInstanceRegistry([instance(ap_server.base_url)]),
    )
    body = b'{"Module":"User","Data":{"ID":"100001","DateUpdated":"2026-11-26T07:00:00.000Z"}}'
    with AppServer(app) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            response = await client.post("/webhooks/accessplanit/ap-test", content=body, headers=signed(body))
            ready = await client.get("/health/ready")
            live = await client.get("/health/live")
    assert response.status_code == 503
    assert response.json()["detail"] == "the event could not be stored; retry later"
    assert ready.status_code == 503 and ready.json()["kafka"] == "unreachable"
    assert live.status_code == 200
