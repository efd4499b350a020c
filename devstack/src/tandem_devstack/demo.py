"""Registers the demo instance's webhooks with the simulators, as an operator would with the real vendors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from tandem_devstack.stack import (
    DEMO_ACCESSPLANIT_API_KEY,
    DEMO_ACCESSPLANIT_WEBHOOK_SECRET,
    DEMO_MAILCHIMP_API_KEY,
    DEMO_MAILCHIMP_AUDIENCE,
    DEMO_MAILCHIMP_WEBHOOK_SECRET,
)


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


def register_accessplanit_webhook(endpoints: Endpoints, instance_id: str = "demo") -> None:
    base = f"{endpoints.accessplanit}/api/v2/Webhook"
    target = f"{endpoints.ingest}/webhooks/accessplanit/{instance_id}"
    headers = {"Authorization": f"Bearer {DEMO_ACCESSPLANIT_API_KEY}"}
    existing = httpx.get(base, headers=headers, timeout=10).json()
    items = existing.get("results", existing) if isinstance(existing, dict) else existing
    if any(item.get("TargetUrl") == target for item in items):
        return
    body = {
        "Module": "User",
        "Events": ["created", "updated", "deleted"],
        "TargetUrl": target,
        "Secret": DEMO_ACCESSPLANIT_WEBHOOK_SECRET,
    }
    httpx.post(base, json=body, headers=headers, timeout=10).raise_for_status()


def register_mailchimp_webhook(endpoints: Endpoints, instance_id: str = "demo") -> None:
    base = f"{endpoints.mailchimp}/lists/{DEMO_MAILCHIMP_AUDIENCE}/webhooks"
    target = f"{endpoints.ingest}/webhooks/mailchimp/{instance_id}/{DEMO_MAILCHIMP_WEBHOOK_SECRET}"
    auth = ("tandem", DEMO_MAILCHIMP_API_KEY)
    existing = httpx.get(base, auth=auth, timeout=10).json().get("webhooks", [])
    if any(item.get("url") == target for item in existing):
        return
    body = {
        "url": target,
        "events": {
            "subscribe": True,
            "unsubscribe": True,
            "profile": True,
            "cleaned": True,
            "upemail": True,
            "campaign": False,
        },
        "sources": {"user": True, "admin": True, "api": True},
    }
    httpx.post(base, json=body, auth=auth, timeout=10).raise_for_status()
