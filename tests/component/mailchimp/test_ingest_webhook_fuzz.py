"""Arbitrary bodies at the Mailchimp webhook: never a 5xx, and nothing published unless the answer is 200."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
from component.mailchimp.ingest_kit import (
    FIXTURE_AUDIENCE,
    PATH_SECRET,
    SIGNING_SECRET,
    FakePublisher,
    fixture_body,
    ingest_app,
    instance,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tandem_ingest.domain.signatures import sign

FIXTURE_NAMES = ["subscribe", "profile", "upemail", "unsubscribe", "cleaned", "campaign"]
KNOWN_KEYS = [
    "type",
    "fired_at",
    "data",
    "data[]",
    "data[id]",
    "data[list_id]",
    "data[email]",
    "data[email_type]",
    "data[merges]",
    "data[merges][EMAIL]",
    "data[merges][FNAME]",
    "data[merges][ADDRESS][city]",
    "data[merges][ADDRESS][]",
    "data[new_id]",
    "data[new_email]",
    "data[old_email]",
    "data[action]",
    "data[reason]",
]
KNOWN_VALUES = [
    *FIXTURE_NAMES,
    "sms_subscribe",
    "2026-01-02 03:04:05",
    "2026-13-45 99:99:99",
    FIXTURE_AUDIENCE,
    "a@example.com",
    "delete",
    "",
    " ",
]

bracketed_keys = st.builds(
    lambda base, parts: base + "".join(f"[{p}]" for p in parts),
    st.text(max_size=8),
    st.lists(st.text(max_size=8), max_size=8),
)
keys = st.sampled_from(KNOWN_KEYS) | bracketed_keys | st.text(max_size=20)
values = st.sampled_from(KNOWN_VALUES) | st.text(max_size=40)
form_bodies = st.lists(st.tuples(keys, values), max_size=25).map(lambda pairs: urlencode(pairs).encode())


@st.composite
def mutated_fixtures(draw: st.DrawFn) -> bytes:
    pairs = parse_qsl(fixture_body(draw(st.sampled_from(FIXTURE_NAMES))).decode(), keep_blank_values=True)
    for _ in range(draw(st.integers(0, 4))):
        if not pairs:
            break
        index = draw(st.integers(0, len(pairs) - 1))
        action = draw(st.sampled_from(["drop", "value", "key", "duplicate"]))
        key, value = pairs[index]
        if action == "drop":
            pairs.pop(index)
        elif action == "value":
            pairs[index] = (key, draw(values))
        elif action == "key":
            pairs[index] = (draw(keys), value)
        else:
            pairs.append((draw(keys), value))
    return urlencode(pairs).encode()


bodies = form_bodies | mutated_fixtures() | st.binary(max_size=300)
content_types = st.sampled_from(
    [
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=utf-8",
        "application/json",
        "text/plain",
        "",
    ]
)


# Fresh timestamps with arbitrary digests get past the time check to the comparison itself.
signatures = (
    st.text(max_size=120)
    | st.builds(lambda digest: f"t={int(time.time())},v1={digest}", st.text(max_size=70))
    | st.just("valid")
)


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
async def client(tmp_path: Path, publisher: FakePublisher) -> AsyncIterator[httpx.AsyncClient]:
    (tmp_path / "plain").mkdir()
    (tmp_path / "signed").mkdir()
    instances = [instance("plain", tmp_path / "plain"), instance("signed", tmp_path / "signed", signed=True)]
    app = ingest_app(instances, publisher, max_body_bytes=2048)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest") as http:
        yield http


async def post(
    client: httpx.AsyncClient, instance_id: str, body: bytes, headers: dict[str, str] | dict[str, bytes]
) -> httpx.Response:
    return await client.post(f"/webhooks/mailchimp/{instance_id}/{PATH_SECRET}", content=body, headers=headers)


def check(response: httpx.Response, published_before: int, publisher: FakePublisher) -> None:
    assert response.status_code < 500, (response.status_code, response.text)
    assert response.status_code in (200, 400, 401, 413, 415), (response.status_code, response.text)
    published = len(publisher.events) - published_before
    if response.status_code == 200 and "event_id" in response.json():
        # Published now, or by an earlier example with the same body (a redelivery is acknowledged, not republished).
        assert published <= 1
        assert response.json()["event_id"] in {e.event_id for e in publisher.events}
        assert len({e.event_id for e in publisher.events}) == len(publisher.events)
    else:
        assert published == 0, response.text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, content_type=content_types)
async def test_arbitrary_bodies_never_get_a_5xx(
    client: httpx.AsyncClient, publisher: FakePublisher, body: bytes, content_type: str
) -> None:
    before = len(publisher.events)
    headers = {"Content-Type": content_type} if content_type else {}
    check(await post(client, "plain", body, headers), before, publisher)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, signature=signatures, stale=st.booleans())
async def test_arbitrary_bodies_and_signatures_never_get_a_5xx(
    client: httpx.AsyncClient, publisher: FakePublisher, body: bytes, signature: str, stale: bool
) -> None:
    before = len(publisher.events)
    if signature == "valid":
        signature = sign(SIGNING_SECRET, body, int(time.time()) - (400 if stale else 0))
    # As raw bytes: a sender is not bound to ASCII header values.
    headers = {"Content-Type": b"application/x-www-form-urlencoded", "X-Mailchimp-Signature": signature.encode()}
    check(await post(client, "signed", body, headers), before, publisher)
