"""Outbound webhooks: planning instances inside a write's transaction, then delivering them in the background.

A delivery never blocks the API response. Each attempt is recorded on its WebhookInstance so tests (and the
`WebhookInstance` module) can see status and attempt counts; unfinished instances resume after a restart.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from .controls import Controls
from .settings import SimSettings
from .store import Doc, Store

SIGNATURE_HEADER = "X-Accessplanit-Signature"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def iso_now(offset_seconds: float = 0.0) -> str:
    moment = datetime.now(UTC) + timedelta(seconds=offset_seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def plan_deliveries(store: Store, controls: Controls, module: str, event: str, record: Doc) -> list[tuple[Doc, bytes]]:
    """Create one Pending instance per subscribed webhook. Call inside the write's transaction."""
    method = {"created": "POST", "updated": controls.webhook_update_method, "deleted": "DELETE"}[event]
    data = record if controls.webhook_payload_mode == "full" else {"ID": record["ID"]}
    planned = []
    for webhook in store.webhooks():
        if webhook["Module"].lower() != module.lower() or event not in webhook["Events"]:
            continue
        instance_id = store.next_id("webhook_instance")
        timestamp = iso_now()
        payload = json.dumps(
            {
                "Module": module,
                "Event": event,
                "WebhookID": webhook["ID"],
                "WebhookInstanceID": instance_id,
                "Timestamp": timestamp,
                "Data": data,
            }
        ).encode()
        doc: Doc = {
            "ID": instance_id,
            "WebhookID": webhook["ID"],
            "Module": module,
            "Event": event,
            "Method": method,
            "TargetUrl": webhook["TargetUrl"],
            "ObjectID": record["ID"],
            "Status": "Pending",
            "Attempts": 0,
            "LastStatusCode": None,
            "LastError": None,
            "NextAttemptAt": timestamp,
            "DateCreated": timestamp,
            "DateUpdated": timestamp,
        }
        store.add_instance(doc, payload)
        planned.append((doc, payload))
    return planned


def _seconds_until(iso: str) -> float:
    due = datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return max(0.0, (due - datetime.now(UTC)).total_seconds())


class WebhookDispatcher:
    def __init__(self, store: Store, settings: SimSettings, controls: Controls) -> None:
        self._store = store
        self._settings = settings
        self._controls = controls
        self._client = httpx.AsyncClient(timeout=settings.webhook_timeout_seconds, follow_redirects=False)
        self._tasks: set[asyncio.Task[None]] = set()
        self._ordering_locks: dict[str, asyncio.Lock] = {}

    def enqueue(self, deliveries: list[tuple[Doc, bytes]]) -> None:
        for doc, payload in deliveries:
            task = asyncio.get_running_loop().create_task(self._deliver(doc, payload))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def resume(self) -> None:
        self.enqueue(self._store.unfinished_instances())

    async def cancel_all(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def aclose(self) -> None:
        await self.cancel_all()
        await self._client.aclose()

    async def _deliver(self, doc: Doc, payload: bytes) -> None:
        if not self._settings.webhook_ordered:
            await self._attempts(doc, payload)
            return
        async with self._ordering_locks.setdefault(doc["WebhookID"], asyncio.Lock()):
            await self._attempts(doc, payload)

    async def _attempts(self, doc: Doc, payload: bytes) -> None:
        delay = _seconds_until(doc["NextAttemptAt"])
        while True:
            await asyncio.sleep(delay)
            error, status_code = await self._attempt(doc, payload)
            delays = self._controls.webhook_retry_delays
            doc["Attempts"] += 1
            doc["LastStatusCode"] = status_code
            doc["LastError"] = error
            doc["DateUpdated"] = iso_now()
            if error is None:
                doc["Status"], doc["NextAttemptAt"] = "Succeeded", None
            elif doc["Attempts"] > len(delays):
                doc["Status"], doc["NextAttemptAt"] = "Failed", None
            else:
                delay = delays[doc["Attempts"] - 1]
                doc["Status"], doc["NextAttemptAt"] = "Retrying", iso_now(delay)
            self._store.update_instance(doc)
            if doc["Status"] != "Retrying":
                return

    async def _attempt(self, doc: Doc, payload: bytes) -> tuple[str | None, int | None]:
        """One HTTP attempt → (error or None, receiver status code)."""
        if self._controls.webhooks_failing:
            return "Simulated failure: webhooks_failing is on; nothing was sent.", None
        webhook = next((w for w in self._store.webhooks() if w["ID"] == doc["WebhookID"]), None)
        if webhook is None:
            return "The webhook was deleted before delivery.", None
        headers: dict[str, Any] = {"Content-Type": "application/json"}
        secret = self._store.webhook_secret(doc["WebhookID"])
        if secret:
            headers[SIGNATURE_HEADER] = sign(secret, int(time.time()), payload)
        try:
            response = await self._client.request(doc["Method"], doc["TargetUrl"], content=payload, headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}", None
        if response.is_success:
            return None, response.status_code
        return f"Receiver answered {response.status_code}.", response.status_code
