"""The webhook routes served ahead of FastAPI answer exactly what FastAPI's own routes for them answer."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from component.mailchimp.ingest_kit import (
    PATH_SECRET,
    FakePublisher,
    fixture_body,
    ingest_app,
    instance,
    write_secret,
)
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from fakes.ingest import BusyClaims
from tandem_ingest.dedupe import EventClaims
from tandem_ingest.domain.signatures import sign
from tandem_shared.contracts import InstanceConfig
from tandem_shared.metrics import INGEST_ACCEPTED

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
AP_SECRET = "accessplanit-webhook-secret"
AP_URL = "/webhooks/accessplanit/plain"
AP_BODY = orjson.dumps(
    {
        "Module": "User",
        "Event": "updated",
        "WebhookID": "1",
        "WebhookInstanceID": "7",
        "Timestamp": "2026-11-26T07:00:00.123Z",
        "Data": {
            "ID": "41",
            "Forenames": "Ada",
            "Surname": "Lovelace",
            "Email": "ada@example.com",
            "DateUpdated": "2026-11-26T07:00:00.123Z",
        },
    }
)


def ap_signed(body: bytes = AP_BODY, secret: str = AP_SECRET) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Accessplanit-Signature": sign(secret, body, int(time.time()))}


def both_vendors(secrets_dir: Path) -> InstanceConfig:
    """The Mailchimp kit's instance, its accessplanit webhooks signed with a secret of its own."""
    base = instance("plain", secrets_dir)
    secret_ref = write_secret(secrets_dir, "accessplanit-secret", AP_SECRET)
    # Signed deliveries, to the URL without a path secret.
    signed = base.accessplanit.model_copy(update={"webhook_secret": secret_ref, "webhook_path_secret": None})
    return base.model_copy(update={"accessplanit": signed})


class ThroughFastAPI:
    """The same app, but every request taken through FastAPI's middleware and router (its routes still exist)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await FastAPI.__call__(self.app, scope, receive, send)


class Exploding(FakePublisher):
    async def publish(self, event: Any, **_: object) -> None:
        raise RuntimeError("a bug, not bad input")


Clients = tuple[httpx.AsyncClient, httpx.AsyncClient, FakePublisher]


async def serve(secrets_dir: Path, claims: EventClaims | None = None) -> AsyncIterator[Clients]:
    publisher = FakePublisher()
    instances = [both_vendors(secrets_dir)]
    # Two apps alike, each with its own duplicate check: a delivery sent down both paths is new on each.
    app = ingest_app(instances, publisher, max_body_bytes=4096, claims=claims)
    other = ingest_app(instances, publisher, max_body_bytes=4096, claims=claims)
    hot = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest")
    slow = httpx.AsyncClient(transport=httpx.ASGITransport(app=ThroughFastAPI(other)), base_url="http://ingest")
    async with hot, slow:
        yield hot, slow, publisher


@pytest.fixture
async def clients(tmp_path: Path) -> AsyncIterator[Clients]:
    async for served in serve(tmp_path):
        yield served


@pytest.fixture
async def busy_clients(tmp_path: Path) -> AsyncIterator[Clients]:
    """Every change is being stored right now by another delivery."""
    async for served in serve(tmp_path, BusyClaims()):
        yield served


def url(secret: str = PATH_SECRET) -> str:
    return f"/webhooks/mailchimp/plain/{secret}"


def comparable(response: httpx.Response) -> tuple[int, str | None, str | None, str | None, Any]:
    body: Any = response.text
    if response.headers.get("content-type") == "application/json":
        body = response.json()
        if isinstance(body, dict):
            body.pop("execution_id", None)  # a new one per delivery
    headers = response.headers
    return response.status_code, headers.get("content-type"), headers.get("allow"), headers.get("retry-after"), body


@pytest.mark.parametrize(
    ("method", "path", "content", "headers"),
    [
        ("GET", url(), None, {}),
        ("GET", url("wrong"), None, {}),
        ("POST", url(), b"", FORM),
        ("POST", url(), fixture_body("profile"), FORM),
        ("POST", url(), fixture_body("profile"), {"Content-Type": "application/json"}),
        ("POST", url("wrong"), fixture_body("profile"), FORM),
        ("POST", url(), b"type=profile&x=" + b"a" * 5000, FORM),
        ("POST", url(), b"type=profile", FORM),
        ("PUT", url(), fixture_body("profile"), FORM),
        ("DELETE", url(), None, {}),
        ("POST", "/webhooks/mailchimp/plain", b"", FORM),
        ("PUT", AP_URL, AP_BODY, ap_signed()),
        ("PUT", AP_URL, AP_BODY, ap_signed(secret="wrong")),
        ("PUT", AP_URL, b"{", ap_signed(b"{")),
        ("PUT", AP_URL, b"{}", ap_signed(b"{}")),
        ("PUT", AP_URL, b"x" * 5000, ap_signed(b"x" * 5000)),
        ("PUT", "/webhooks/accessplanit/nobody", AP_BODY, ap_signed()),
        ("GET", AP_URL, None, {}),
    ],
)
async def test_the_hot_route_answers_what_fastapi_answers(
    clients: Clients,
    method: str,
    path: str,
    content: bytes | None,
    headers: dict[str, str],
) -> None:
    hot, slow, _ = clients
    from_hot = await hot.request(method, path, content=content, headers=headers)
    from_fastapi = await slow.request(method, path, content=content, headers=headers)
    assert comparable(from_hot) == comparable(from_fastapi)


@pytest.mark.parametrize(
    ("path", "content", "headers"),
    [(url(), fixture_body("profile"), FORM), (AP_URL, AP_BODY, ap_signed())],
    ids=["mailchimp", "accessplanit"],
)
async def test_a_change_being_stored_right_now_is_a_503_with_retry_after_on_both_paths(
    busy_clients: Clients, path: str, content: bytes, headers: dict[str, str]
) -> None:
    hot, slow, publisher = busy_clients
    from_hot = await hot.post(path, content=content, headers=headers)
    from_fastapi = await slow.post(path, content=content, headers=headers)
    assert comparable(from_hot) == comparable(from_fastapi)
    assert (from_hot.status_code, from_hot.headers.get("retry-after")) == (503, "1")
    assert from_hot.json()["detail"] == "the same change is being stored right now; retry shortly"
    assert publisher.events == []


async def test_deliveries_through_the_hot_route_are_stored_and_counted(
    clients: Clients,
) -> None:
    hot, _, publisher = clients
    accepted = INGEST_ACCEPTED.labels(source="mailchimp")
    before = accepted._value.get()
    response = await hot.post(url(), content=fixture_body("profile"), headers=FORM)
    assert response.status_code == 200
    assert [e.event_id for e in publisher.events] == [response.json()["event_id"]]
    assert accepted._value.get() == before + 1


async def test_a_bug_in_a_hot_route_is_a_plain_500_as_in_fastapi(tmp_path: Path) -> None:
    app = ingest_app([instance("plain", tmp_path)], Exploding())
    answers = []
    for target in (app, ThroughFastAPI(app)):
        transport = httpx.ASGITransport(app=target, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            answers.append(await client.post(url(), content=fixture_body("profile"), headers=FORM))
        if target is app:
            # FastAPI builds its middleware stack on the first request it serves: this one never reached it.
            assert app.middleware_stack is None
    assert [(a.status_code, a.text) for a in answers] == [(500, "Internal Server Error")] * 2
