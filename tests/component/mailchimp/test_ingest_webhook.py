"""The Mailchimp webhook route in-process: validation, secrets, signatures, every fixture, and refusals."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from component.mailchimp.ingest_kit import (
    PATH_SECRET,
    SIGNING_SECRET,
    FakePublisher,
    fixture_body,
    ingest_app,
    instance,
)

from tandem_ingest.domain.signatures import sign
from tandem_shared.contracts import ChangeKind, System

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
async def client(tmp_path: Path, publisher: FakePublisher) -> AsyncIterator[httpx.AsyncClient]:
    (tmp_path / "plain").mkdir()
    (tmp_path / "signed").mkdir()
    (tmp_path / "nosecret").mkdir()
    instances = [
        instance("plain", tmp_path / "plain"),
        instance("signed", tmp_path / "signed", signed=True),
        instance("nosecret", tmp_path / "nosecret", webhook_secret=None),
        instance("missing", tmp_path, webhook_secret="env:TANDEM_TEST_UNSET_SECRET_VARIABLE"),
    ]
    app = ingest_app(instances, publisher, max_body_bytes=4096)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest") as http:
        yield http


def url(instance_id: str = "plain", secret: str = PATH_SECRET) -> str:
    return f"/webhooks/mailchimp/{instance_id}/{secret}"


async def test_mailchimps_url_check_gets_200(client: httpx.AsyncClient) -> None:
    assert (await client.get(url())).status_code == 200
    assert (await client.get(url("signed"))).status_code == 200


async def test_wrong_secret_unknown_instance_or_no_configured_secret_look_alike(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    for target in (url(secret="wrong"), url(secret=PATH_SECRET + "x"), url("nobody"), url("nosecret")):
        assert (await client.get(target)).status_code == 404
        response = await client.post(target, content=fixture_body("subscribe"), headers=FORM)
        assert response.status_code == 404
        assert response.json() == {"status": 404, "title": "Not Found", "detail": "no such webhook"}
    assert publisher.events == []


async def test_an_unresolvable_path_secret_is_a_404_like_any_wrong_secret_and_logged(
    client: httpx.AsyncClient, publisher: FakePublisher, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 503 made Mailchimp retry for 75 minutes and told any sender that the instance exists."""
    for response in (
        await client.get(url("missing", "anything")),
        await client.post(url("missing", "anything"), content=fixture_body("subscribe"), headers=FORM),
    ):
        assert response.status_code == 404
        assert response.json() == {"status": 404, "title": "Not Found", "detail": "no such webhook"}
    assert "Mailchimp webhook secret unavailable" in capsys.readouterr().out
    assert publisher.events == []


async def test_an_empty_post_is_a_validation_ping(client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    assert (await client.post(url(), content=b"", headers=FORM)).status_code == 200
    assert (await client.post(url("signed"), content=b"")).status_code == 200
    assert publisher.events == []


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("subscribe", ChangeKind.CREATED),
        ("profile", ChangeKind.UPDATED),
        ("upemail", ChangeKind.EMAIL_CHANGED),
        ("unsubscribe", ChangeKind.UNSUBSCRIBED),
        ("cleaned", ChangeKind.CLEANED),
    ],
)
async def test_each_member_event_is_published_then_acknowledged(
    client: httpx.AsyncClient, publisher: FakePublisher, name: str, kind: ChangeKind
) -> None:
    response = await client.post(url(), content=fixture_body(name), headers=FORM)
    assert response.status_code == 200, response.text
    assert len(publisher.events) == 1
    event = publisher.events[0]
    assert event.kind is kind
    assert event.source is System.MAILCHIMP
    assert event.instance_id == "plain"
    assert response.json() == {"event_id": event.event_id, "execution_id": event.execution_id}


async def test_a_redelivery_is_acknowledged_and_not_published_twice(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    for _ in range(2):
        assert (await client.post(url(), content=fixture_body("profile"), headers=FORM)).status_code == 200
    assert len(publisher.events) == 1


async def test_campaign_events_are_acknowledged_and_dropped(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    response = await client.post(url(), content=fixture_body("campaign"), headers=FORM)
    assert response.status_code == 200
    assert response.json()["ignored"] == "campaign"
    assert publisher.events == []


async def test_kafka_unavailable_is_a_503(client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    publisher.unavailable = True
    response = await client.post(url(), content=fixture_body("subscribe"), headers=FORM)
    assert response.status_code == 503
    assert publisher.events == []


async def test_a_signed_delivery_verifies(client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    body = fixture_body("profile")
    headers = {**FORM, "X-Mailchimp-Signature": sign(SIGNING_SECRET, body, int(time.time()))}
    assert (await client.post(url("signed"), content=body, headers=headers)).status_code == 200
    assert len(publisher.events) == 1


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "garbage",
        sign("other-secret", fixture_body("profile"), int(time.time())),
        sign(SIGNING_SECRET, fixture_body("profile"), int(time.time()) - 301),
        sign(SIGNING_SECRET, fixture_body("profile") + b"&x=1", int(time.time())),
    ],
)
async def test_unsigned_wrongly_signed_or_stale_deliveries_are_refused(
    client: httpx.AsyncClient, publisher: FakePublisher, signature: str | None
) -> None:
    headers = dict(FORM)
    if signature is not None:
        headers["X-Mailchimp-Signature"] = signature
    response = await client.post(url("signed"), content=fixture_body("profile"), headers=headers)
    assert response.status_code == 401
    assert publisher.events == []


async def test_bodies_over_the_limit_are_413(client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    response = await client.post(url(), content=b"type=profile&x=" + b"a" * 5000, headers=FORM)
    assert response.status_code == 413
    assert publisher.events == []


async def test_other_content_types_are_415(client: httpx.AsyncClient) -> None:
    response = await client.post(url(), content=b'{"type": "profile"}', headers={"Content-Type": "application/json"})
    assert response.status_code == 415


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"not a form", "urlencoded"),
        (b"data[merges=1", "bracketed"),
        (b"fired_at=2024-01-01+00%3A00%3A00", "type is missing"),
        (b"type=profile&fired_at=nope", "fired_at"),
        (b"type=profile&fired_at=2024-01-01+00%3A00%3A00&data%5Blist_id%5D=a6b5da1054", "data[email] is missing"),
        (fixture_body("subscribe").replace(b"a6b5da1054", b"zzzzzzzzzz"), "not this instance's audience"),
    ],
)
async def test_malformed_deliveries_are_400_with_a_reason(
    client: httpx.AsyncClient, publisher: FakePublisher, body: bytes, detail: str
) -> None:
    response = await client.post(url(), content=body, headers=FORM)
    assert response.status_code == 400
    assert detail in response.json()["detail"]
    assert publisher.events == []
