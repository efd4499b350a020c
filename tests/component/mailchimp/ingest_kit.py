"""An in-process ingest app with a fake publisher and a fixed instance list, for the Mailchimp webhook route."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI

from fakes.ingest import InMemoryClaims
from tandem_ingest.dedupe import EventClaims
from tandem_ingest.entrypoint import create_app
from tandem_ingest.publishing import KafkaUnavailable
from tandem_ingest.settings import IngestSettings
from tandem_shared.contracts import ChangeEvent, InstanceConfig
from tandem_shared.instances import StaticInstanceRegistry, demo_instance

PATH_SECRET = "path-secret-0123456789"
SIGNING_SECRET = "ab" * 32
FIXTURE_AUDIENCE = "a6b5da1054"
FIXTURES = Path(__file__).parents[2] / "unit" / "simulators" / "mailchimp" / "fixtures" / "mailchimp-webhooks"


@dataclass
class FakePublisher:
    events: list[ChangeEvent] = field(default_factory=list)
    unavailable: bool = False

    async def publish(self, event: ChangeEvent, **_: object) -> None:
        if self.unavailable:
            raise KafkaUnavailable("broker down")
        self.events.append(event)


def write_secret(directory: Path, name: str, value: str) -> str:
    path = directory / name
    path.write_text(value)
    return f"file:{path}"


def instance(
    instance_id: str,
    secrets_dir: Path,
    *,
    audience: str = FIXTURE_AUDIENCE,
    signed: bool = False,
    webhook_secret: str | None = "set",
) -> InstanceConfig:
    base = demo_instance()
    path_ref = None
    if webhook_secret == "set":
        path_ref = write_secret(secrets_dir, "path-secret", PATH_SECRET)
    elif webhook_secret is not None:
        path_ref = webhook_secret
    signing_ref = write_secret(secrets_dir, "signing-secret", SIGNING_SECRET) if signed else None
    return base.model_copy(
        update={
            "id": instance_id,
            "mailchimp": base.mailchimp.model_copy(
                update={"audience_id": audience, "webhook_secret": path_ref, "webhook_signing_secret": signing_ref}
            ),
        }
    )


def ingest_app(
    instances: list[InstanceConfig],
    publisher: FakePublisher,
    max_body_bytes: int = 256 * 1024,
    claims: EventClaims | None = None,
) -> FastAPI:
    settings = IngestSettings(max_body_bytes=max_body_bytes, log_json=False, log_level="WARNING")
    return create_app(
        settings, StaticInstanceRegistry(instances), publisher=publisher, claims=claims or InMemoryClaims()
    )


def fixture_body(name: str) -> bytes:
    return (FIXTURES / f"{name}.form").read_bytes().strip()
