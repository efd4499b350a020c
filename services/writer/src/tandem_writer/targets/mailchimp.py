"""Mailchimp target: member upserts and email changes through one pooled HTTP client per account.

Every request runs inside a slot of a concurrency limiter shared by all writer replicas (Redis), so Tandem never
opens more than Mailchimp's 10 simultaneous connections per account and never causes a 429 itself.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import httpx

from tandem_shared.concurrency import (
    ConcurrencyLimiter,
    LimiterUnavailable,
    RedisConcurrencyLimiter,
    SlotUnavailable,
)
from tandem_shared.contracts import (
    ErrorInfo,
    InstanceConfig,
    Operation,
    SyncCommand,
    System,
    email_key,
    subscriber_hash,
)
from tandem_shared.secrets import SecretUnavailable, resolve_secret
from tandem_writer.outcome import WriteOutcome
from tandem_writer.settings import WriterSettings
from tandem_writer.targets.mailchimp_classify import classify_response, classify_transport, holds_server_slot

# Member fields worth keeping in the trace; the full document repeats the audience's every field and link.
_MEMBER_SUMMARY_FIELDS = (
    "id",
    "email_address",
    "unique_email_id",
    "contact_id",
    "status",
    "merge_fields",
    "last_changed",
    "list_id",
)


def member_summary(member: dict[str, Any]) -> dict[str, Any]:
    return {k: member[k] for k in _MEMBER_SUMMARY_FIELDS if k in member}


def upsert_body(payload: dict[str, Any], status_if_new: str) -> dict[str, Any] | ErrorInfo:
    """The PUT body. A sync never sets `status`: `status_if_new` applies to new members only, so an existing
    member's choice (unsubscribed, cleaned, pending) is never overridden."""
    email = payload.get("email_address")
    if not isinstance(email, str) or not email.strip():
        return ErrorInfo(
            error_class="InvalidCommand",
            message="the command's Mailchimp member has no email_address",
            permanent=True,
            field="email_address",
        )
    body = {k: v for k, v in payload.items() if k != "status"}
    body.setdefault("status_if_new", status_if_new)
    return body


def patch_body(upsert: dict[str, Any]) -> dict[str, Any]:
    """The PATCH body for an email change: the new address and profile, no status of any kind."""
    return {k: v for k, v in upsert.items() if k not in ("status", "status_if_new")}


def limiter_name(api_root: str, api_key: str) -> str:
    """One semaphore per Mailchimp account, named without revealing the key."""
    digest = hashlib.sha256(f"{api_root}|{api_key}".encode()).hexdigest()[:24]
    return f"mailchimp:{digest}"


@dataclass(frozen=True)
class Account:
    client: httpx.AsyncClient
    semaphore: str


class MailchimpTarget:
    system = System.MAILCHIMP

    def __init__(
        self,
        *,
        limiter: ConcurrencyLimiter,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        max_connections: int = 10,
        server_timeout_s: float = 120.0,
    ) -> None:
        self._limiter = limiter
        self._timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s)
        self._max_connections = max_connections
        self._server_timeout_s = server_timeout_s
        self._accounts: dict[str, Account] = {}

    @classmethod
    def from_settings(cls, settings: WriterSettings) -> MailchimpTarget:
        limiter = RedisConcurrencyLimiter.from_url(
            settings.redis_url,
            limit=settings.mailchimp_max_connections,
            lease_s=settings.mailchimp_lease_s,
            max_wait_s=settings.mailchimp_slot_wait_s,
        )
        return cls(
            limiter=limiter,
            timeout_s=settings.http_timeout_s,
            max_connections=settings.mailchimp_max_connections,
            server_timeout_s=settings.mailchimp_timed_out_slot_hold_s,
        )

    def _account(self, instance: InstanceConfig) -> Account:
        api_key = resolve_secret(instance.mailchimp.api_key)
        root = instance.mailchimp.api_root(api_key)
        name = limiter_name(root, api_key)
        account = self._accounts.get(name)
        if account is None:
            client = httpx.AsyncClient(
                base_url=root,
                auth=httpx.BasicAuth("tandem", api_key),
                timeout=self._timeout,
                limits=httpx.Limits(
                    max_connections=self._max_connections, max_keepalive_connections=self._max_connections
                ),
            )
            account = Account(client, name)
            self._accounts[name] = account
        return account

    async def _call(self, account: Account, method: str, path: str, body: dict[str, Any]) -> httpx.Response | ErrorInfo:
        try:
            async with self._limiter.slot(account.semaphore) as lease:
                try:
                    return await account.client.request(method, path, json=body)
                except httpx.TransportError as exc:
                    if holds_server_slot(exc):
                        lease.keep_for(self._server_timeout_s)
                    return classify_transport(exc)
                except httpx.InvalidURL as exc:
                    return ErrorInfo(
                        error_class="InvalidApiBaseUrl", message=f"Mailchimp API URL is invalid: {exc}", permanent=True
                    )
        except SlotUnavailable as exc:
            return ErrorInfo(error_class="ConcurrencyLimit", message=str(exc), permanent=False)
        except LimiterUnavailable as exc:
            return ErrorInfo(error_class="LimiterUnavailable", message=str(exc), permanent=False)

    async def write(self, command: SyncCommand, instance: InstanceConfig) -> WriteOutcome:
        body = upsert_body(command.payload, instance.mailchimp.status_if_new)
        if isinstance(body, ErrorInfo):
            return WriteOutcome(False, f"Not sent to Mailchimp: {body.message}", error=body)
        try:
            account = self._account(instance)
        except SecretUnavailable as exc:
            error = ErrorInfo(
                error_class="SecretUnavailable", message=f"Mailchimp API key unavailable: {exc}", permanent=True
            )
            return WriteOutcome(False, f"Not sent to Mailchimp: {error.message}", error=error)
        audience = instance.mailchimp.audience_id
        old_email = command.identity.old_email
        if (
            command.operation is Operation.CHANGE_EMAIL
            and old_email
            and email_key(old_email) != email_key(body["email_address"])
        ):
            return await self._change_email(account, audience, old_email, body)
        return await self._upsert(account, audience, body)

    async def _upsert(self, account: Account, audience: str, body: dict[str, Any], note: str = "") -> WriteOutcome:
        email = body["email_address"]
        result = await self._call(account, "PUT", f"/lists/{audience}/members/{subscriber_hash(email)}", body)
        if isinstance(result, ErrorInfo):
            return _failed(result)
        if not result.is_success:
            return _refused(result)
        member = _member(result)
        if member is None:
            return _unexpected(result)
        return WriteOutcome(
            True,
            f"{note}Mailchimp member {member.get('email_address', email)} is {member.get('status', 'unknown')}",
            response=member_summary(member),
        )

    async def _change_email(
        self, account: Account, audience: str, old_email: str, body: dict[str, Any]
    ) -> WriteOutcome:
        new_email = body["email_address"]
        path = f"/lists/{audience}/members/{subscriber_hash(old_email)}"
        result = await self._call(account, "PATCH", path, patch_body(body))
        if isinstance(result, ErrorInfo):
            return _failed(result)
        if result.status_code == 404:
            # Nothing to move (never synced, archived, or a retry after the move already happened): the new
            # address is what matters, so it is upserted instead.
            return await self._upsert(account, audience, body, note=f"{old_email} is not in the audience; ")
        if not result.is_success:
            return _refused(result)
        member = _member(result)
        if member is None:
            return _unexpected(result)
        return WriteOutcome(
            True,
            f"Mailchimp member {old_email} is now {member.get('email_address', new_email)}",
            response=member_summary(member),
        )

    async def close(self) -> None:
        for account in self._accounts.values():
            await account.client.aclose()
        self._accounts.clear()
        await self._limiter.close()


def _member(response: httpx.Response) -> dict[str, Any] | None:
    try:
        member = response.json()
    except ValueError:
        return None
    return member if isinstance(member, dict) else None


def _failed(error: ErrorInfo) -> WriteOutcome:
    return WriteOutcome(False, f"Mailchimp write failed: {error.message}", error=error)


def _refused(response: httpx.Response) -> WriteOutcome:
    error = classify_response(response.status_code, response.content, response.headers.get("content-type", ""))
    return WriteOutcome(False, f"Mailchimp refused the write: {error.message}", error=error)


def _unexpected(response: httpx.Response) -> WriteOutcome:
    # A 2xx without the member document (a proxy in between?): the PUT/PATCH is safe to repeat.
    error = ErrorInfo(
        error_class="UnexpectedResponse",
        message=f"Mailchimp answered {response.status_code} without a member document",
        permanent=False,
    )
    return WriteOutcome(False, f"Mailchimp write unconfirmed: {error.message}", error=error)
