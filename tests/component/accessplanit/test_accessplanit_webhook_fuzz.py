"""Whatever arrives at the accessplanit webhook route, the answer is never a 5xx and a 2xx always means published.

In-process, with Kafka, Redis and the accessplanit API replaced by fakes: this is about the route's handling of input.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import httpx
import orjson
import pytest
from component.accessplanit.accessplanit_fixtures import (
    SECRET_ENV,
    WEBHOOK_SECRET,
    RecordingPublisher,
    instance,
    signed,
)
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from fakes.ingest import InMemoryClaims
from tandem_ingest.entrypoint import create_app
from tandem_ingest.settings import IngestSettings
from tandem_shared.contracts import InstanceConfig
from tandem_shared.instances import StaticInstanceRegistry

SIGNED, UNSIGNED = "fuzz-signed", "fuzz-unsigned"
METHODS = st.sampled_from(["POST", "PUT", "PATCH", "DELETE"])


class FakeReader:
    """The API's view of a user: IDs ending in 0 no longer exist; the others have a plain record."""

    def __init__(self) -> None:
        self.reads = 0

    async def get_user(self, instance: InstanceConfig, user_id: str) -> dict[str, Any] | None:
        self.reads += 1
        if user_id.endswith("0"):
            return None
        return {"ID": user_id, "Email": "fuzz@example.com", "DateUpdated": "2026-11-26T07:00:00.000Z"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
# Mostly well-formed values, so that inputs get past validation and reach publishing, plus anything at all.
ids = st.one_of(st.integers(100_000, 100_020).map(str), st.integers(1, 99), st.text(max_size=12), json_values)
timestamps = st.one_of(
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat().replace("+00:00", "Z")),
    st.sampled_from(["2026-11-26T07:00:00.123Z", "2026-11-26T07:00:00", "2026-13-40T99:00:00Z", ""]),
    json_values,
)
user_fields = st.fixed_dictionaries(
    {"ID": ids, "DateUpdated": timestamps},
    optional={
        "Email": st.one_of(st.emails(), st.text(max_size=30), json_values),
        "UpdatedByID": st.one_of(st.sampled_from(["900001", "900002"]), json_values),
        "Status": st.one_of(st.sampled_from(["Active", "Deleted"]), json_values),
        "DateCreated": json_values,
        "Forenames": json_values,
    },
)
envelopes = st.fixed_dictionaries(
    {"Data": st.one_of(user_fields, st.fixed_dictionaries({"ID": ids}), json_values)},
    optional={
        "Module": st.one_of(st.sampled_from(["User", "user", "Course"]), json_values),
        "Event": st.one_of(st.sampled_from(["created", "updated", "deleted"]), json_values),
        "Timestamp": st.one_of(st.sampled_from(["2026-11-26T07:00:00.123Z"]), json_values),
        "WebhookID": json_values,
    },
)


@dataclass
class Fuzzed:
    """The app on an event loop of its own thread (hypothesis drives synchronous tests)."""

    client: httpx.AsyncClient
    loop: asyncio.AbstractEventLoop
    publisher: RecordingPublisher
    reader: FakeReader

    def request(self, method: str, path: str, **request: Any) -> httpx.Response:
        call = self.client.request(method, path, **request)
        return asyncio.run_coroutine_threadsafe(call, self.loop).result(timeout=30)


@pytest.fixture(scope="module")
def fuzz_app() -> Iterator[Fuzzed]:
    publisher, reader = RecordingPublisher(), FakeReader()
    base = "http://127.0.0.1:9"
    app = create_app(
        IngestSettings(
            kafka_bootstrap_servers="127.0.0.1:9",  # never connected: no lifespan, fakes for Kafka and Redis
            redis_url="redis://127.0.0.1:9/0",
            poller_enabled=False,
            log_json=False,
        ),
        StaticInstanceRegistry(
            [instance(base, instance_id=SIGNED), instance(base, instance_id=UNSIGNED, signed=False)]
        ),
        publisher=publisher,
        claims=InMemoryClaims(),
        reader=reader,
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest")
    with pytest.MonkeyPatch.context() as env:
        env.setenv(SECRET_ENV, WEBHOOK_SECRET)
        yield Fuzzed(client, loop, publisher, reader)
    asyncio.run_coroutine_threadsafe(client.aclose(), loop).result(timeout=10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.close()


def check(fuzz_app: Fuzzed, method: str, path: str, **request: Any) -> int:
    publisher = fuzz_app.publisher
    before = len(publisher.published)
    response = fuzz_app.request(method, path, **request)
    assert response.status_code < 500, (response.status_code, response.text)
    published = len(publisher.published) - before
    if response.status_code == 202:
        assert published == 1
        assert response.json()["event_id"] == publisher.published[-1].event.event_id
    else:
        assert published == 0, response.status_code
    if response.status_code >= 400:
        assert response.json()["detail"]
    return response.status_code


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(envelopes, json_values), method=METHODS, instance_id=st.sampled_from([SIGNED, UNSIGNED]))
def test_any_signed_json_gets_an_answer_below_500(fuzz_app: Fuzzed, body: Any, method: str, instance_id: str) -> None:
    raw = json.dumps(body).encode()  # the stdlib: orjson refuses integers beyond 64 bits
    status = check(fuzz_app, method, f"/webhooks/accessplanit/{instance_id}", content=raw, headers=signed(raw))
    event(f"HTTP {status}")  # --hypothesis-show-statistics shows how far the inputs got


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    raw=st.binary(max_size=2048),
    signature=st.one_of(st.none(), st.text(max_size=80)),
    sign_it=st.booleans(),
    method=METHODS,
    instance_id=st.sampled_from([SIGNED, UNSIGNED, "no-such-instance"]),
)
def test_any_bytes_with_any_signature_get_an_answer_below_500(
    fuzz_app: Fuzzed,
    raw: bytes,
    signature: str | None,
    sign_it: bool,
    method: str,
    instance_id: str,
) -> None:
    headers: dict[str, Any] = signed(raw) if sign_it else {}
    if signature is not None and not sign_it:
        headers["X-Accessplanit-Signature"] = signature.encode("utf-8")
    status = check(fuzz_app, method, f"/webhooks/accessplanit/{instance_id}", content=raw, headers=headers)
    event(f"HTTP {status}")


def test_the_fuzzing_reaches_publishing_and_the_api(
    fuzz_app: Fuzzed,
) -> None:
    """Guards the two tests above against only ever exercising the refusals."""
    raw = orjson.dumps({"Module": "User", "Data": {"ID": "7"}})
    check(fuzz_app, "PUT", f"/webhooks/accessplanit/{SIGNED}", content=raw, headers=signed(raw))
    assert fuzz_app.publisher.published and fuzz_app.reader.reads
