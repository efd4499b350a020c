"""Registers the demo instance's webhooks with the simulators, as an operator would with the real vendors."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from tandem_cli.webhooks import register_webhook, webhook_url, with_signing_secret, write_secret_file
from tandem_devstack.processes import wait_until
from tandem_devstack.stack import (
    DEMO_ACCESSPLANIT_API_KEY,
    DEMO_ACCESSPLANIT_WEBHOOK_PATH_SECRET,
    DEMO_MAILCHIMP_API_KEY,
    DEMO_MAILCHIMP_WEBHOOK_SECRET,
)
from tandem_shared.contracts import InstanceConfig
from tandem_shared.instance_store import put_instance
from tandem_shared.kafka import KafkaConnection


@dataclass(frozen=True)
class Endpoints:
    """Where the simulators and ingest answer, as seen from the process that registers the webhooks.

    On loopback for `make run`; service names in docker compose, where the vendors reach ingest by its name.
    """

    accessplanit: str  # tenant URL, up to and excluding /api/v2
    mailchimp: str  # API root, including /3.0
    ingest: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Endpoints:
        """The same variables the services read (see `stack_env`), so registration and sync agree on URLs."""
        return cls(
            accessplanit=env["TANDEM_DEMO_ACCESSPLANIT_URL"].rstrip("/"),
            mailchimp=env["TANDEM_DEMO_MAILCHIMP_URL"].rstrip("/"),
            ingest=env["TANDEM_DEMO_INGEST_URL"].rstrip("/"),
        )


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=3).is_success
    except httpx.HTTPError:
        return False


def wait_for_endpoints(endpoints: Endpoints, timeout: float) -> None:
    """Until both simulators and ingest answer. docker compose starts the demo step only once they are healthy, but
    an engine that ignores `service_healthy` (podman-compose below podman 4.6) starts it as soon as they run; the
    step waits for them itself then, as the `topics` step waits for the broker."""
    mailchimp_root = endpoints.mailchimp.removesuffix("/3.0")
    for what, url in (
        ("the accessplanit simulator", f"{endpoints.accessplanit}/_sim/health"),
        ("the Mailchimp simulator", f"{mailchimp_root}/_sim/health"),
        ("ingest", f"{endpoints.ingest}/health/live"),
    ):
        wait_until(lambda url=url: _answers(url), timeout=timeout, what=f"{what} at {url}", interval=1.0)


def accessplanit_webhook_url(
    ingest: str, instance_id: str, path_secret: str = DEMO_ACCESSPLANIT_WEBHOOK_PATH_SECRET
) -> str:
    """The URL accessplanit delivers the demo instance's webhooks to: its path secret keeps unknown senders out."""
    return f"{ingest}/webhooks/accessplanit/{instance_id}/{path_secret}"


def register_accessplanit_webhook(endpoints: Endpoints, instance_id: str = "demo") -> None:
    base = f"{endpoints.accessplanit}/api/v2/Webhook"
    target = accessplanit_webhook_url(endpoints.ingest, instance_id)
    headers = {"Authorization": f"Bearer {DEMO_ACCESSPLANIT_API_KEY}"}
    existing = httpx.get(base, headers=headers, timeout=10).json()
    items = existing.get("results", existing) if isinstance(existing, dict) else existing
    if any(item.get("TargetUrl") == target for item in items):
        return
    # No Secret: accessplanit documents no webhook signing, so the demo takes the default, unsigned path (ingest
    # reads each announced user back with the instance's key); the URL's path secret authenticates the sender.
    body = {"Module": "User", "Events": ["created", "updated", "deleted"], "TargetUrl": target}
    httpx.post(base, json=body, headers=headers, timeout=10).raise_for_status()


def register_mailchimp_webhook(
    endpoints: Endpoints, kafka: str, secrets_dir: Path, instance: InstanceConfig
) -> InstanceConfig:
    """What `tandem webhooks register INSTANCE --signing-secret-file …` does, with the demo's known keys.

    Returns the instance as it now stands: reading Mailchimp's signing secret from a file under `secrets_dir`, so
    ingest verifies every delivery. A webhook that exists but whose secret file is gone is recreated.
    """
    secret_file = secrets_dir / f"mailchimp-signing-secret-{instance.id}"
    url = webhook_url(endpoints.ingest, instance.id, DEMO_MAILCHIMP_WEBHOOK_SECRET)
    registration = register_webhook(
        instance.mailchimp,
        DEMO_MAILCHIMP_API_KEY,
        url,
        DEMO_MAILCHIMP_WEBHOOK_SECRET,
        replace=not secret_file.exists(),
    )
    if registration.created:
        if registration.signing_secret:
            write_secret_file(secret_file, registration.signing_secret)
        else:
            secret_file.unlink(missing_ok=True)
    ref = f"file:{secret_file}" if secret_file.exists() else None
    if instance.mailchimp.webhook_signing_secret != ref and ref is not None:
        instance = with_signing_secret(instance, ref)
        asyncio.run(put_instance(KafkaConnection.from_env("tandem-devstack", kafka), instance))
    return instance
