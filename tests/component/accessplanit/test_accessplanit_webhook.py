"""The accessplanit webhook route of ingest, in-process, reading users from the simulator when it has to."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from component.accessplanit.accessplanit_fixtures import (
    RecordingPublisher,
    control,
    create_user,
    instance,
    requests,
    signed,
)
from component.simulators.accessplanit.accessplanit_testkit import SimServer, new_user
from fastapi import FastAPI

from tandem_ingest.entrypoint import create_app
from tandem_ingest.settings import IngestSettings
from tandem_shared.contracts import ChangeKind, Headers, InstanceConfig, Stage, Trigger
from tandem_shared.instances import StaticInstanceRegistry

DEAD_PORT_URL = "redis://127.0.0.1:9/0"  # discard port: nothing listens on loopback


def delivery(method: str, data: dict[str, Any], event: str = "updated") -> bytes:
    return orjson.dumps(
        {
            "Module": "User",
            "Event": event,
            "WebhookID": "1",
            "WebhookInstanceID": "7",
            "Timestamp": "2026-11-26T07:00:00.123Z",
            "Data": data,
        }
    )


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


def ingest_app(
    instances: list[InstanceConfig], publisher: RecordingPublisher, redis_url: str, **settings: Any
) -> FastAPI:
    return create_app(
        # No lifespan runs in-process: the broker is never connected, events go to the recording publisher.
        IngestSettings(
            kafka_bootstrap_servers="127.0.0.1:9", redis_url=redis_url, poller_enabled=False, log_json=False, **settings
        ),
        StaticInstanceRegistry(instances),
        publisher=publisher,
    )


@pytest.fixture
async def ingest(
    ap_server: SimServer, sim: httpx.AsyncClient, redis: object, redis_db_url: str, publisher: RecordingPublisher
) -> AsyncIterator[httpx.AsyncClient]:
    app = ingest_app(
        [instance(ap_server.base_url), instance(ap_server.base_url, instance_id="unsigned", signed=False)],
        publisher,
        redis_db_url,
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest") as client:
        yield client


async def post(
    client: httpx.AsyncClient, body: bytes, method: str = "PUT", instance_id: str = "ap-test", **headers: str
):
    return await client.request(
        method, f"/webhooks/accessplanit/{instance_id}", content=body, headers={**signed(body), **headers}
    )


async def test_a_signed_delivery_is_published_once_and_its_redelivery_is_recognized(
    ingest: httpx.AsyncClient, admin: httpx.AsyncClient, publisher: RecordingPublisher
) -> None:
    user = await create_user(admin)
    body = delivery("POST", user, "created")
    first = await post(ingest, body, "POST")
    assert first.status_code == 202, first.text
    [published] = publisher.published
    event = published.event
    assert (event.kind, event.trigger, published.stage) == (ChangeKind.CREATED, Trigger.WEBHOOK, Stage.INGEST)
    assert event.identity.accessplanit_user_id == user["ID"]
    assert event.fields["Surname"] == "Lovelace"
    assert first.json() == {"event_id": event.event_id, "execution_id": event.execution_id}

    again = await post(ingest, body, "POST")
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert again.json()["event_id"] == event.event_id
    assert len(publisher.published) == 1


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Accessplanit-Signature": "t=1,v1=00"},
        {"X-Accessplanit-Signature": ""},
        signed(b"another body"),
        signed(b"{}", secret="wrong-secret"),
    ],
)
async def test_a_delivery_without_a_valid_signature_is_refused_and_nothing_published(
    ingest: httpx.AsyncClient, publisher: RecordingPublisher, headers: dict[str, str]
) -> None:
    body = b"{}" if "wrong-secret" in str(headers) else delivery("PUT", {"ID": "1"})
    response = await ingest.put("/webhooks/accessplanit/ap-test", content=body, headers=headers)
    # At the URL without a path secret, answered as an unknown instance is: no prober learns that it exists.
    assert (response.status_code, response.json()["detail"]) == (404, "no such webhook")
    assert publisher.published == []


async def test_a_signature_from_long_ago_is_refused(ingest: httpx.AsyncClient, publisher: RecordingPublisher) -> None:
    body = delivery("PUT", {"ID": "1"})
    response = await ingest.put("/webhooks/accessplanit/ap-test", content=body, headers=signed(body, at=1_000_000))
    assert response.status_code == 404  # as an unknown instance: the URL has no path secret
    assert publisher.published == []


async def test_an_unknown_instance_is_404(ingest: httpx.AsyncClient) -> None:
    response = await post(ingest, delivery("PUT", {"ID": "1"}), instance_id="nope")
    assert response.status_code == 404


async def test_a_deleted_instance_is_answered_as_an_unknown_one(
    ap_server: SimServer, admin: httpx.AsyncClient, redis: object, redis_db_url: str, publisher: RecordingPublisher
) -> None:
    registry = StaticInstanceRegistry([instance(ap_server.base_url)])
    settings = IngestSettings(
        kafka_bootstrap_servers="127.0.0.1:9", redis_url=redis_db_url, poller_enabled=False, log_json=False
    )
    app = create_app(settings, registry, publisher=publisher)
    body = delivery("POST", await create_user(admin), "created")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest") as client:
        assert (await post(client, body, "POST")).status_code == 202
        await registry.delete("ap-test")
        deleted = await post(client, body, "POST")
        unknown = await post(client, body, "POST", instance_id="nope")
    assert deleted.status_code == unknown.status_code == 404
    assert deleted.json() == unknown.json()
    assert len(publisher.published) == 1


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"not json", "body is not valid JSON"),
        (b"[" * 50_000 + b"]" * 50_000, "nested too deeply"),
        (b"[]", "body must be a JSON object"),
        (b'{"Module": "Course", "Data": {"ID": "1"}}', "only User webhooks"),
        (b'{"Data": {"ID": "1", "DateUpdated": "2026-11-26T07:00:00"}}', "Data.DateUpdated has no time zone"),
        (b'{"Data": {"ID": "1", "DateUpdated": "2026-11-26T07:00:00Z", "Email": 5}}', "Data.Email must be a string"),
        (b'{"Data": {"ID": "../../Webhook"}}', "is not an accessplanit ID"),
    ],
)
async def test_bad_bodies_get_a_400_that_says_why(
    ingest: httpx.AsyncClient, publisher: RecordingPublisher, body: bytes, detail: str
) -> None:
    response = await post(ingest, body)
    assert response.status_code == 400
    assert detail in response.json()["detail"]
    assert publisher.published == []


async def test_an_unsupported_method_is_refused_without_a_5xx(ingest: httpx.AsyncClient) -> None:
    response = await post(ingest, delivery("GET", {"ID": "1"}), method="GET")
    assert response.status_code == 405


async def test_an_ids_only_delivery_is_completed_from_the_api(
    ingest: httpx.AsyncClient, admin: httpx.AsyncClient, publisher: RecordingPublisher
) -> None:
    user = await create_user(admin, Phone="0123")
    response = await post(ingest, delivery("PUT", {"ID": user["ID"]}))
    assert response.status_code == 202, response.text
    [event] = publisher.events()
    assert event.fields == user
    assert event.identity.email == "ada@example.com"
    assert event.kind is ChangeKind.UPDATED


async def test_an_ids_only_delivery_for_a_removed_user_becomes_its_deletion(
    ingest: httpx.AsyncClient, admin: httpx.AsyncClient, publisher: RecordingPublisher, sim: httpx.AsyncClient
) -> None:
    await control(sim, **{"delete_mode": "hard"})
    user = await create_user(admin)
    (await admin.delete(f"/User/{user['ID']}")).raise_for_status()
    first = await post(ingest, delivery("DELETE", {"ID": user["ID"]}, "deleted"), "DELETE")
    late_update = await post(ingest, delivery("PUT", {"ID": user["ID"]}))
    assert (first.status_code, late_update.status_code) == (202, 200)
    [event] = publisher.events()
    assert event.kind is ChangeKind.DELETED
    assert event.fields == {"ID": user["ID"]}


async def test_when_the_user_cannot_be_read_the_sender_is_asked_to_retry(
    ingest: httpx.AsyncClient, admin: httpx.AsyncClient, publisher: RecordingPublisher, sim: httpx.AsyncClient
) -> None:
    user = await create_user(admin)
    await control(sim, **{"faults": [{"status": 503, "count": 1}]})
    body = delivery("PUT", {"ID": user["ID"]})
    refused = await post(ingest, body)
    assert refused.status_code == 503
    assert "could not be read from accessplanit" in refused.json()["detail"]
    assert publisher.published == []
    assert (await post(ingest, body)).status_code == 202


async def test_an_unsigned_delivery_only_names_the_user_the_record_comes_from_the_api(
    ingest: httpx.AsyncClient, admin: httpx.AsyncClient, publisher: RecordingPublisher
) -> None:
    user = await create_user(admin)
    forged = orjson.dumps({"Module": "User", "Data": {**user, "Surname": "Forged", "Email": "evil@example.com"}})
    response = await ingest.put("/webhooks/accessplanit/unsigned", content=forged)
    assert response.status_code == 202, response.text
    [published] = publisher.published
    assert published.event.fields["Surname"] == "Lovelace"
    assert published.event.identity.email == "ada@example.com"
    assert any("Unsigned delivery" in note for note in published.notes)


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_an_unsigned_update_comes_as_put_or_patch_and_is_read_back_as_the_demo_client_reads(
    method: str,
    ingest: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    sim: httpx.AsyncClient,
    publisher: RecordingPublisher,
) -> None:
    user = await create_user(admin, Phone="01632 960000", DOB="1990-03-28")
    before = await requests(sim, "GET", "/api/v2/User")
    response = await ingest.request(method, "/webhooks/accessplanit/unsigned", content=delivery(method, user))
    assert response.status_code == 202, response.text
    [published] = publisher.published
    assert published.event.kind is ChangeKind.UPDATED
    assert (published.event.fields["Phone"], published.event.fields["DOB"]) == ("01632 960000", "1990-03-28T00:00:00")
    # One read, `GET /User?$filter=ID eq '…'`, never `GET /User/{id}` (unconfirmed in v2).
    assert await requests(sim, "GET", "/api/v2/User") == before + 1
    assert await requests(sim, "GET", "/api/v2/User/{user_id}") == 0


async def test_changes_made_by_the_integrations_own_user_are_marked(
    ingest: httpx.AsyncClient, admin: httpx.AsyncClient, publisher: RecordingPublisher
) -> None:
    by_person = await create_user(admin)
    by_tandem = {**by_person, "DateUpdated": "2026-11-26T08:00:00.000Z", "UpdatedByID": "900001"}
    assert (await post(ingest, delivery("PUT", by_person))).status_code == 202
    assert (await post(ingest, delivery("PUT", by_tandem))).status_code == 202
    person, tandem = publisher.published
    assert person.headers == {} and person.event.updated_by_id == "900002"
    assert tandem.headers == {Headers.ORIGIN: "tandem"}
    assert tandem.event.updated_by_id == "900001"
    assert any("the integration's own API user" in note for note in tandem.notes)


async def test_kafka_down_is_a_503_and_the_same_delivery_is_accepted_once_kafka_is_back(
    ingest: httpx.AsyncClient, admin: httpx.AsyncClient, publisher: RecordingPublisher
) -> None:
    body = delivery("PUT", await create_user(admin))
    publisher.down = True
    refused = await post(ingest, body)
    assert refused.status_code == 503
    assert refused.json()["detail"] == "the event could not be stored; retry later"
    publisher.down = False
    accepted = await post(ingest, body)
    assert accepted.status_code == 202
    assert len(publisher.published) == 1


async def test_redis_down_is_a_503_and_nothing_is_published(
    ap_server: SimServer, sim: httpx.AsyncClient, publisher: RecordingPublisher
) -> None:
    app = ingest_app([instance(ap_server.base_url)], publisher, DEAD_PORT_URL)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest") as client:
        response = await post(client, delivery("PUT", {**new_user(), "ID": "5", "DateUpdated": "2026-11-26T07:00:00Z"}))
    assert response.status_code == 503
    assert "duplicates" in response.json()["detail"]
    assert publisher.published == []


async def test_a_body_over_the_limit_is_refused(ingest: httpx.AsyncClient) -> None:
    body = delivery("PUT", {"ID": "1", "Notes": "x" * 300_000})
    response = await post(ingest, body)
    assert response.status_code == 404  # as an unknown instance: the URL has no path secret (413 with one)
