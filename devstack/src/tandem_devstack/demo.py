"""Registers the demo instance's webhooks with the simulators, as an operator would with the real vendors."""

from __future__ import annotations

import httpx

from tandem_devstack.stack import (
    DEMO_ACCESSPLANIT_API_KEY,
    DEMO_ACCESSPLANIT_WEBHOOK_SECRET,
    DEMO_MAILCHIMP_API_KEY,
    DEMO_MAILCHIMP_AUDIENCE,
    DEMO_MAILCHIMP_WEBHOOK_SECRET,
    Ports,
)


def register_accessplanit_webhook(ports: Ports, instance_id: str = "demo") -> None:
    base = f"http://127.0.0.1:{ports.accessplanit_sim}/api/v2/Webhook"
    target = f"http://127.0.0.1:{ports.ingest}/webhooks/accessplanit/{instance_id}"
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


def register_mailchimp_webhook(ports: Ports, instance_id: str = "demo") -> None:
    base = f"http://127.0.0.1:{ports.mailchimp_sim}/3.0/lists/{DEMO_MAILCHIMP_AUDIENCE}/webhooks"
    target = f"http://127.0.0.1:{ports.ingest}/webhooks/mailchimp/{instance_id}/{DEMO_MAILCHIMP_WEBHOOK_SECRET}"
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
