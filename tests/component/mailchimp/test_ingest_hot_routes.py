"""The webhook routes served ahead of FastAPI answer exactly what FastAPI's own routes for them answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from component.mailchimp.ingest_kit import PATH_SECRET, FakePublisher, fixture_body, ingest_app, instance
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from tandem_shared.metrics import INGEST_ACCEPTED

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class ThroughFastAPI:
    """The same app, but every request taken through FastAPI's middleware and router (its routes still exist)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await FastAPI.__call__(self.app, scope, receive, send)


class Exploding(FakePublisher):
    async def publish(self, event: Any, **_: object) -> None:
        raise RuntimeError("a bug, not bad input")


@pytest.fixture
async def clients(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient, FakePublisher]]:
    publisher = FakePublisher()
    app = ingest_app([instance("plain", tmp_path)], publisher, max_body_bytes=4096)
    hot = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest")
    slow = httpx.AsyncClient(transport=httpx.ASGITransport(app=ThroughFastAPI(app)), base_url="http://ingest")
    async with hot, slow:
        yield hot, slow, publisher


def url(secret: str = PATH_SECRET) -> str:
    return f"/webhooks/mailchimp/plain/{secret}"


def comparable(response: httpx.Response) -> tuple[int, str | None, str | None, Any]:
    body: Any = response.text
    if response.headers.get("content-type") == "application/json":
        body = response.json()
        if isinstance(body, dict):
            body.pop("execution_id", None)  # a new one per delivery
    return response.status_code, response.headers.get("content-type"), response.headers.get("allow"), body


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
    ],
)
async def test_the_hot_route_answers_what_fastapi_answers(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient, FakePublisher],
    method: str,
    path: str,
    content: bytes | None,
    headers: dict[str, str],
) -> None:
    hot, slow, _ = clients
    from_hot = await hot.request(method, path, content=content, headers=headers)
    from_fastapi = await slow.request(method, path, content=content, headers=headers)
    assert comparable(from_hot) == comparable(from_fastapi)


async def test_deliveries_through_the_hot_route_are_stored_and_counted(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient, FakePublisher],
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
