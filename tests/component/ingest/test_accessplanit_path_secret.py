"""accessplanit webhooks with a path secret in the URL (as Mailchimp's): unknown senders are refused before any
read of the user from accessplanit, and an unknown instance, a wrong secret and a secret that cannot be resolved
are answered alike; so is whatever the URL without a path secret refuses for an instance that signs (a missing or
wrong signature, an oversized body): it must not tell a prober which instance ids exist."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from component.accessplanit.accessplanit_fixtures import SECRET_ENV, WEBHOOK_SECRET, RecordingPublisher, instance

from fakes.ingest import InMemoryClaims
from tandem_ingest.accessplanit_webhook import SIGNATURE_HEADER
from tandem_ingest.domain.signatures import sign
from tandem_ingest.entrypoint import create_app
from tandem_ingest.settings import IngestSettings
from tandem_shared.contracts import InstanceConfig
from tandem_shared.instances import StaticInstanceRegistry

PATH_ENV = "TANDEM_TEST_AP_PATH_SECRET"
PATH_SECRET = "ap-path-secret-0123456789"
BODY = orjson.dumps({"Module": "User", "Event": "updated", "Data": {"ID": "1001"}})


class CountingReader:
    def __init__(self) -> None:
        self.reads = 0

    async def get_user(self, instance: InstanceConfig, user_id: str) -> dict[str, Any] | None:
        self.reads += 1
        return {"ID": user_id, "Email": "a@example.com", "DateUpdated": "2026-11-26T07:00:00.000Z"}


def with_path_secret(instance_id: str, ref: str) -> InstanceConfig:
    base = instance("http://127.0.0.1:9", instance_id=instance_id, signed=False)
    return base.model_copy(update={"accessplanit": base.accessplanit.model_copy(update={"webhook_path_secret": ref})})


@pytest.fixture
def reader() -> CountingReader:
    return CountingReader()


@pytest.fixture
async def client(monkeypatch: pytest.MonkeyPatch, reader: CountingReader) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setenv(PATH_ENV, PATH_SECRET)
    registry = StaticInstanceRegistry(
        [with_path_secret("guarded", f"env:{PATH_ENV}"), with_path_secret("broken", "env:TANDEM_TEST_UNSET_PATH")]
    )
    settings = IngestSettings(
        kafka_bootstrap_servers="127.0.0.1:9",
        redis_url="redis://127.0.0.1:9/0",
        poller_enabled=False,
        log_json=False,
        accessplanit_reread_window_s=0.0,
        accessplanit_reread_min_interval_s=0.0,
    )
    app = create_app(settings, registry, publisher=RecordingPublisher(), claims=InMemoryClaims(), reader=reader)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest") as http:
        yield http


async def test_the_right_path_secret_is_served(client: httpx.AsyncClient, reader: CountingReader) -> None:
    response = await client.put(f"/webhooks/accessplanit/guarded/{PATH_SECRET}", content=BODY)
    assert response.status_code == 202, response.text
    assert reader.reads == 1


@pytest.mark.parametrize(
    "path",
    [
        "/webhooks/accessplanit/guarded/wrong-secret",
        f"/webhooks/accessplanit/guarded/{PATH_SECRET}x",
        "/webhooks/accessplanit/guarded",  # the instance has a path secret: the URL without it is no webhook
        f"/webhooks/accessplanit/nobody/{PATH_SECRET}",
        "/webhooks/accessplanit/nobody",
        f"/webhooks/accessplanit/broken/{PATH_SECRET}",  # a reference that cannot be resolved: logged, not a 503
    ],
)
async def test_unknown_senders_are_refused_alike_before_any_read(
    client: httpx.AsyncClient, reader: CountingReader, path: str
) -> None:
    response = await client.put(path, content=BODY)
    assert response.status_code == 404
    assert response.json() == {"status": 404, "title": "Not Found", "detail": "no such webhook"}
    assert reader.reads == 0


@pytest.fixture
async def signed_client(monkeypatch: pytest.MonkeyPatch, reader: CountingReader) -> AsyncIterator[httpx.AsyncClient]:
    """An instance that signs its deliveries and has no path secret: it takes them at the URL without one."""
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)
    registry = StaticInstanceRegistry(
        [
            instance("http://127.0.0.1:9", instance_id="signed", signed=True),
            instance("http://127.0.0.1:9", instance_id="unresolved", signed=True).model_copy(
                update={
                    "accessplanit": instance("http://127.0.0.1:9", signed=True).accessplanit.model_copy(
                        update={"webhook_secret": "env:TANDEM_TEST_UNSET_SIGNING"}
                    )
                }
            ),
        ]
    )
    settings = IngestSettings(
        kafka_bootstrap_servers="127.0.0.1:9",
        redis_url="redis://127.0.0.1:9/0",
        poller_enabled=False,
        log_json=False,
        max_body_bytes=1024,
    )
    app = create_app(settings, registry, publisher=RecordingPublisher(), claims=InMemoryClaims(), reader=reader)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest") as http:
        yield http


def signed_body(user_id: str = "1001") -> bytes:
    record = {"ID": user_id, "Email": "a@example.com", "DateUpdated": "2026-11-26T07:00:00.000Z"}
    return orjson.dumps({"Module": "User", "Event": "updated", "Data": record})


async def test_a_signed_delivery_at_the_url_without_a_path_secret_is_served(signed_client: httpx.AsyncClient) -> None:
    body = signed_body()
    signature = sign(WEBHOOK_SECRET, body, int(time.time()))
    response = await signed_client.put(
        "/webhooks/accessplanit/signed", content=body, headers={SIGNATURE_HEADER: signature}
    )
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    ("path", "headers", "body"),
    [
        ("/webhooks/accessplanit/nobody", {}, BODY),  # the unknown instance every other answer must equal
        ("/webhooks/accessplanit/signed", {}, BODY),  # no signature (was 401)
        ("/webhooks/accessplanit/signed", {SIGNATURE_HEADER: "t=1,v1=" + "0" * 64}, BODY),  # a wrong one (was 401)
        ("/webhooks/accessplanit/signed", {}, b"x" * 5000),  # over the body limit (was 413)
        ("/webhooks/accessplanit/unresolved", {}, BODY),  # a signing secret that cannot be resolved (was 503)
    ],
)
async def test_the_url_without_a_path_secret_tells_no_prober_which_instances_exist(
    signed_client: httpx.AsyncClient, reader: CountingReader, path: str, headers: dict[str, str], body: bytes
) -> None:
    response = await signed_client.put(path, content=body, headers=headers)
    assert response.status_code == 404
    assert response.json() == {"status": 404, "title": "Not Found", "detail": "no such webhook"}
    assert reader.reads == 0
