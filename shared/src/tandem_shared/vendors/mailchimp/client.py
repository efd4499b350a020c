"""The one HTTP client for Mailchimp's Marketing API: one pooled connection set per account, every request inside a
slot of the account's connection budget.

Mailchimp allows 10 simultaneous connections per account and answers the 11th with 429, so every request holds a
slot of a concurrency limiter shared by all replicas (Redis) while it runs; Tandem never causes that 429 itself. A
`PriorityGate` in front of the limiter lets live writes go before authoritative reads, and those before
reconciliation. Failures come out as `MailchimpError` carrying an ErrorInfo (see `classify`); `status` is None when
Mailchimp gave no answer (no slot, no connection, a timeout).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from tandem_shared.concurrency import ConcurrencyLimiter, Lease, LimiterUnavailable, SlotUnavailable
from tandem_shared.contracts import ErrorInfo, InstanceConfig, subscriber_hash
from tandem_shared.secrets import SecretUnavailable, resolve_secret
from tandem_shared.vendor_urls import VendorUrlRefused, check_vendor_url
from tandem_shared.vendors.mailchimp.classify import (
    classify_response,
    classify_transport,
    holds_server_slot,
    problem_document,
)
from tandem_shared.vendors.priority import Priority, PriorityGate, PriorityWaitTimeout


class MailchimpError(Exception):
    """`detail` says in a few words why there was no answer (or repeats the message); `problem` is Mailchimp's
    JSON error document when it sent one."""

    def __init__(
        self,
        error: ErrorInfo,
        status: int | None = None,
        *,
        detail: str | None = None,
        problem: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(error.message)
        self.error = error
        self.status = status
        self.detail = detail or error.message
        self.problem = problem


@dataclass(frozen=True)
class Reply:
    """A 2xx answer: its status and JSON document (None when the body is not JSON)."""

    status: int
    document: Any


def limiter_name(api_root: str, api_key: str) -> str:
    """One semaphore per Mailchimp account, named without revealing the key."""
    digest = hashlib.sha256(f"{api_root}|{api_key}".encode()).hexdigest()[:24]
    return f"mailchimp:{digest}"


def member_path(audience: str, email: str) -> str:
    return f"/lists/{audience}/members/{subscriber_hash(email)}"


def _slot_error(exc: SlotUnavailable | LimiterUnavailable | PriorityWaitTimeout) -> ErrorInfo:
    error_class = "LimiterUnavailable" if isinstance(exc, LimiterUnavailable) else "ConcurrencyLimit"
    return ErrorInfo(error_class=error_class, message=str(exc), permanent=False)


def _transport_detail(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _reply(response: httpx.Response) -> Reply:
    if not response.is_success:
        content_type = response.headers.get("content-type", "")
        error = classify_response(response.status_code, response.content, content_type)
        problem = problem_document(response.content, content_type)
        raise MailchimpError(error, response.status_code, problem=problem)
    try:
        document = response.json()
    except ValueError:
        document = None
    return Reply(response.status_code, document)


class MailchimpSession:
    """A connection slot of one account, held by the caller: requests sent through it use that slot."""

    def __init__(self, http: httpx.AsyncClient, lease: Lease, *, server_timeout_s: float) -> None:
        self._http = http
        self._lease = lease
        self._server_timeout_s = server_timeout_s

    async def request(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None) -> Reply:
        try:
            response = await self._http.request(method, path, json=json, params=params)
        except httpx.TransportError as exc:
            if holds_server_slot(exc):
                self._lease.keep_for(self._server_timeout_s)
            raise MailchimpError(classify_transport(exc), detail=_transport_detail(exc)) from exc
        except httpx.InvalidURL as exc:
            error = ErrorInfo(
                error_class="InvalidApiBaseUrl", message=f"Mailchimp API URL is invalid: {exc}", permanent=True
            )
            raise MailchimpError(error, detail=type(exc).__name__) from exc
        return _reply(response)


class MailchimpClient:
    """One Mailchimp account (API root and key)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        name: str,
        limiter: ConcurrencyLimiter,
        gate: PriorityGate,
        slot_wait_s: float | None,
        server_timeout_s: float,
    ) -> None:
        self.name = name
        self._http = http
        self._limiter = limiter
        self._gate = gate
        self._slot_wait_s = slot_wait_s
        self._server_timeout_s = server_timeout_s

    @asynccontextmanager
    async def slot(self, priority: Priority) -> AsyncIterator[MailchimpSession]:
        """A connection slot for as long as the block runs; MailchimpError (transient) when none frees up."""
        async with AsyncExitStack() as held:
            try:
                async with self._gate.turn(self.name, priority, max_wait_s=self._slot_wait_s):
                    lease = await held.enter_async_context(self._limiter.slot(self.name))
            except (SlotUnavailable, LimiterUnavailable, PriorityWaitTimeout) as exc:
                raise MailchimpError(_slot_error(exc)) from exc
            yield MailchimpSession(self._http, lease, server_timeout_s=self._server_timeout_s)

    async def request(
        self,
        method: str,
        path: str,
        *,
        priority: Priority,
        json: Any = None,
        params: dict[str, Any] | None = None,
    ) -> Reply:
        async with self.slot(priority) as session:
            return await session.request(method, path, json=json, params=params)

    async def aclose(self) -> None:
        await self._http.aclose()


class MailchimpClients:
    """One pooled HTTP client per account, created on first use; the limiter and its gate are shared by all."""

    def __init__(
        self,
        *,
        limiter: ConcurrencyLimiter,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        max_connections: int = 10,
        server_timeout_s: float = 120.0,
        slot_wait_s: float | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """`slot_wait_s` bounds how long a request of a lower class waits behind higher ones (None: no bound);
        the limiter bounds the wait for the slot itself."""
        self.max_connections = max_connections
        self._limiter = limiter
        self._timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s)
        self._server_timeout_s = server_timeout_s
        self._slot_wait_s = slot_wait_s
        self._transport = transport
        self._gate = PriorityGate()
        self._clients: dict[str, MailchimpClient] = {}

    def for_instance(self, instance: InstanceConfig) -> MailchimpClient:
        """Raises MailchimpError (permanent) when the instance's API key cannot be resolved."""
        try:
            api_key = resolve_secret(instance.mailchimp.api_key)
        except SecretUnavailable as exc:
            error = ErrorInfo(
                error_class="SecretUnavailable", message=f"Mailchimp API key unavailable: {exc}", permanent=True
            )
            raise MailchimpError(error) from exc
        return self.for_account(instance.mailchimp.api_root(api_key), api_key)

    def for_account(self, api_root: str, api_key: str) -> MailchimpClient:
        """Raises MailchimpError (permanent) when `api_root` is not Mailchimp's (`tandem_shared.vendor_urls`)."""
        try:
            check_vendor_url(api_root, "mailchimp")
        except VendorUrlRefused as exc:
            raise MailchimpError(ErrorInfo(error_class="VendorUrlRefused", message=str(exc), permanent=True)) from exc
        name = limiter_name(api_root, api_key)
        client = self._clients.get(name)
        if client is None:
            http = httpx.AsyncClient(
                base_url=api_root,
                auth=httpx.BasicAuth("tandem", api_key),
                timeout=self._timeout,
                limits=httpx.Limits(
                    max_connections=self.max_connections, max_keepalive_connections=self.max_connections
                ),
                transport=self._transport,
            )
            client = MailchimpClient(
                http,
                name=name,
                limiter=self._limiter,
                gate=self._gate,
                slot_wait_s=self._slot_wait_s,
                server_timeout_s=self._server_timeout_s,
            )
            self._clients[name] = client
        return client

    async def close(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
        await self._limiter.close()
