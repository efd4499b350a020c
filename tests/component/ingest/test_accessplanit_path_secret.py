"""accessplanit webhooks with a path secret in the URL (as Mailchimp's): unknown senders are refused before any
read of the user from accessplanit, and an unknown instance, a wrong secret and a secret that cannot be resolved
are answered alike."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from component.accessplanit.accessplanit_fixtures import RecordingPublisher, instance

from fakes.ingest import InMemoryClaims
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
