"""Mailchimp target: member upserts through one pooled HTTP client per account."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from tandem_shared.contracts import ErrorInfo, InstanceConfig, SyncCommand, System, subscriber_hash
from tandem_shared.secrets import resolve_secret
from tandem_writer.outcome import WriteOutcome


def base_url(api_key: str, configured: str | None) -> str:
    if configured:
        return configured.rstrip("/")
    dc = api_key.rsplit("-", 1)[-1]
    return f"https://{dc}.api.mailchimp.com/3.0"


def classify(status: int, body: bytes, content_type: str) -> ErrorInfo:
    """Mailchimp responses that are not 2xx: transient ones are retried, permanent ones need a person."""
    detail: dict[str, Any] = {}
    if "json" in content_type:
        try:
            parsed = orjson.loads(body)
            detail = parsed if isinstance(parsed, dict) else {}
        except ValueError:
            detail = {}
    title = str(detail.get("title") or f"HTTP {status}")
    message = str(detail.get("detail") or title)
    errors = detail.get("errors") or []
    field = None
    if errors and isinstance(errors, list) and isinstance(errors[0], dict):
        field = errors[0].get("field")
        message = f"{message} ({field}: {errors[0].get('message')})"
    transient = status == 429 or status >= 500 or (status == 403 and not detail)
    return ErrorInfo(
        error_class=title.replace(" ", ""),
        message=f"{title}: {message}" if message != title else title,
        permanent=not transient,
        field=field,
    )


class MailchimpTarget:
    system = System.MAILCHIMP

    def __init__(self, timeout_s: float) -> None:
        self._timeout = httpx.Timeout(timeout_s, connect=5.0)
        self._clients: dict[tuple[str, str], httpx.AsyncClient] = {}

    def _client(self, instance: InstanceConfig) -> httpx.AsyncClient:
        api_key = resolve_secret(instance.mailchimp.api_key)
        root = base_url(api_key, instance.mailchimp.api_base_url)
        key = (root, api_key)
        client = self._clients.get(key)
        if client is None:
            client = httpx.AsyncClient(
                base_url=root,
                auth=httpx.BasicAuth("tandem", api_key),
                timeout=self._timeout,
                limits=httpx.Limits(max_connections=10, max_keepalive_connections=10),
            )
            self._clients[key] = client
        return client

    async def write(self, command: SyncCommand, instance: InstanceConfig) -> WriteOutcome:
        email = command.payload["email_address"]
        path = f"/lists/{instance.mailchimp.audience_id}/members/{subscriber_hash(email)}"
        try:
            response = await self._client(instance).put(path, json=command.payload)
        except httpx.TimeoutException:
            return WriteOutcome(
                False,
                "Mailchimp timed out",
                error=ErrorInfo(error_class="Timeout", message="Mailchimp timed out", permanent=False),
            )
        except httpx.TransportError as exc:
            return WriteOutcome(
                False,
                "Mailchimp unreachable",
                error=ErrorInfo(error_class=type(exc).__name__, message=str(exc), permanent=False),
            )
        if response.is_success:
            member = response.json()
            return WriteOutcome(
                True, f"Mailchimp member {member.get('email_address')} is {member.get('status')}", response=member
            )
        error = classify(response.status_code, response.content, response.headers.get("content-type", ""))
        return WriteOutcome(False, f"Mailchimp refused the write: {error.message}", error=error)

    async def close(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
