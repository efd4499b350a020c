"""Shared pieces of the accessplanit component tests: the instance under test, commands, a recording publisher."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from tandem_ingest.publishing import KafkaUnavailable
from tandem_shared.contracts import (
    AccessplanitConnection,
    ChangeEvent,
    ContactIdentity,
    Direction,
    FieldMapping,
    InstanceConfig,
    MailchimpConnection,
    Operation,
    Stage,
    SyncCommand,
    System,
    Trigger,
    fingerprint,
    idempotency_key,
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
    identity = ContactIdentity(email=email or payload.get("Email"), old_email=old_email)
    fp = fingerprint(payload)
    now = datetime.now(UTC)
    return SyncCommand(
        command_id="c-1",
        execution_id="x-1",
        event_id="e-1",
        instance_id=instance_id,
        target=System.ACCESSPLANIT,
        operation=operation,
        identity=identity,
        payload=payload,
        fingerprint=fp,
        idempotency_key=idempotency_key(instance_id, System.ACCESSPLANIT, identity.contact_key, operation, fp),
        trigger=Trigger.WEBHOOK,
        source_occurred_at=now,
        created_at=now,
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


def users(admin: httpx.Client, email: str | None = None) -> list[dict[str, Any]]:
    """What accessplanit holds (optionally: with this address), as a person would look it up."""
    params = {"$filter": f"Email eq '{email}'"} if email else {}
    response = admin.get("/User", params=params)
    response.raise_for_status()
    return response.json()["results"]
