"""Shared pieces of the accessplanit component tests: the instance under test, commands, a recording publisher."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn

from support.commands import sync_command
from tandem_ingest.domain.signatures import sign
from tandem_ingest.publishing import KafkaUnavailable
from tandem_shared.contracts import (
    AccessplanitConnection,
    ChangeEvent,
    Direction,
    FieldMapping,
    InstanceConfig,
    MailchimpConnection,
    Operation,
    Stage,
    SyncCommand,
    System,
)

KEY_ENV = "TANDEM_TEST_ACCESSPLANIT_KEY"
SECRET_ENV = "TANDEM_TEST_ACCESSPLANIT_WEBHOOK_SECRET"
WEBHOOK_SECRET = "component-test-webhook-secret"


def instance(base_url: str, *, instance_id: str = "ap-test", signed: bool = True, **connection: Any) -> InstanceConfig:
    return InstanceConfig(
        id=instance_id,
        name="accessplanit component test",
        direction=Direction.BOTH,
        mailchimp=MailchimpConnection(api_key="env:UNUSED_MAILCHIMP_KEY", audience_id="a1b2c3d4e5"),
        accessplanit=AccessplanitConnection(
            base_url=base_url,
            api_key=f"env:{KEY_ENV}",
            default_account_id=connection.pop("default_account_id", "1"),
            integration_user_id="900001",
            webhook_secret=f"env:{SECRET_ENV}" if signed else None,
            **connection,
        ),
        mappings=[
            FieldMapping(mailchimp="FNAME", accessplanit="Forenames"),
            FieldMapping(mailchimp="LNAME", accessplanit="Surname"),
            FieldMapping(mailchimp="EMAIL", accessplanit="Email"),
        ],
    )


def command(
    payload: dict[str, Any],
    *,
    operation: Operation = Operation.UPSERT,
    email: str | None = None,
    old_email: str | None = None,
    instance_id: str = "ap-test",
) -> SyncCommand:
    return sync_command(
        instance_id,
        System.ACCESSPLANIT,
        payload,
        email=email or payload.get("Email"),
        old_email=old_email,
        operation=operation,
        name="c-1",
        execution_id="x-1",
        event_id="e-1",
    )


@dataclass
class Published:
    event: ChangeEvent
    stage: Stage
    notes: list[str]
    headers: dict[str, str]


@dataclass
class RecordingPublisher:
    """Stands in for Kafka: keeps what was published; `down` makes every publish fail as Kafka would."""

    published: list[Published] = field(default_factory=list)
    down: bool = False

    async def publish(
        self,
        event: ChangeEvent,
        *,
        stage: Stage = Stage.INGEST,
        notes: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if self.down:
            raise KafkaUnavailable("broker unreachable")
        self.published.append(Published(event, stage, list(notes), dict(headers or {})))

    def events(self) -> list[ChangeEvent]:
        return [p.event for p in self.published]


async def users(admin: httpx.AsyncClient, email: str | None = None) -> list[dict[str, Any]]:
    """What accessplanit holds (optionally: with this address), as a person would look it up."""
    params = {"$filter": f"Email eq '{email}'"} if email else {}
    response = await admin.get("/User", params=params)
    response.raise_for_status()
    return response.json()["results"]


async def create_user(admin: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    """A user created by a person in accessplanit (Ada Lovelace unless told otherwise)."""
    body = {"Forenames": "Ada", "Surname": "Lovelace", "Email": "ada@example.com", "MainCompanyID": "2", **fields}
    response = await admin.post("/User", json=body)
    response.raise_for_status()
    return response.json()


async def control(sim: httpx.AsyncClient, **controls: Any) -> None:
    (await sim.post("/_sim/controls", json=controls)).raise_for_status()


async def requests(sim: httpx.AsyncClient, method: str, route: str, status: int | None = None) -> int:
    """How many requests the simulator answered for this route (template) and, optionally, status."""
    rows = (await sim.get("/_sim/stats")).json()["requests"]
    return sum(
        r["count"]
        for r in rows
        if r["method"] == method and r["route"] == route and (status is None or r["status"] == status)
    )


def signed(body: bytes, *, secret: str = WEBHOOK_SECRET, at: float | None = None) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Accessplanit-Signature": sign(secret, body, int(time.time() if at is None else at)),
    }


class AppServer:
    """An ASGI app served by uvicorn (lifespan included) in a background thread on a free loopback port."""

    def __init__(self, app: Any) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self.base_url = ""

    def __enter__(self) -> AppServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the app did not start")
            time.sleep(0.02)
        self.base_url = f"http://127.0.0.1:{self._server.servers[0].sockets[0].getsockname()[1]}"
        return self

    def __exit__(self, *_: object) -> None:
        self._server.should_exit = True
        self._thread.join()
