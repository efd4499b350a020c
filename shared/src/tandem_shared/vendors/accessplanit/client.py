"""The one HTTP client for accessplanit API v2: every call is paid for from the shared request budget first.

Each call names its priority class; a `PriorityGate` in front of the budget lets live writes go before
authoritative reads, and those before reconciliation. Failures come out as `AccessplanitError` carrying an
ErrorInfo (transient or permanent, see `classify`), so callers only decide what a failure means for their own work.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import httpx
import orjson
from redis.asyncio import Redis

from tandem_shared.contracts import ErrorInfo, InstanceConfig
from tandem_shared.ratelimit import BudgetExhausted, RateBudget
from tandem_shared.redis.keys import budget_key
from tandem_shared.secrets import SecretUnavailable, resolve_secret
from tandem_shared.vendor_urls import VendorUrlRefused, check_vendor_url
from tandem_shared.vendors.accessplanit.classify import (
    budget_exhausted,
    classify_response,
    transport_failure,
)
from tandem_shared.vendors.accessplanit.settings import AccessplanitSettings
from tandem_shared.vendors.budget import LocalRateBudget, RequestBudget
from tandem_shared.vendors.priority import Priority, PriorityGate, PriorityWaitTimeout

API_PREFIX = "/api/v2"
# Simultaneous requests per tenant and API key (one pooled client each).
MAX_CONNECTIONS = 10


class AccessplanitError(Exception):
    """`status` is None when accessplanit gave no answer; `detail` then says why in a few words."""

    def __init__(self, error: ErrorInfo, status: int | None = None, *, detail: str | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.status = status
        self.detail = detail or error.message


def _transport_detail(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def odata_string(value: str) -> str:
    """A quoted OData string literal: a quote inside is doubled."""
    return "'" + value.replace("'", "''") + "'"


def _results(found: Any, action: str) -> list[dict[str, Any]]:
    """The records of a list answer (`{"results": [...]}`); an answer without that list is unexpected."""
    results = found.get("results") if isinstance(found, dict) else None
    if not isinstance(results, list):
        error = ErrorInfo(
            error_class="UnexpectedAnswer",
            message=f"accessplanit's answer to {action} has no results list",
            permanent=False,
        )
        raise AccessplanitError(error)
    return [r for r in results if isinstance(r, dict)]


def _user_path(user_id: str) -> str:
    return f"{API_PREFIX}/User/{quote(user_id, safe='')}"


def _retry_after_s(value: str | None, default: float) -> float:
    try:
        return max(1.0, float(value)) if value else default
    except ValueError:
        return default


class AccessplanitClient:
    """One tenant and API key. Requests are paid from the budget of (tenant, key, module) shared by all replicas."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        budget: RequestBudget,
        *,
        budget_scope: str,
        settings: AccessplanitSettings,
        gate: PriorityGate | None = None,
    ) -> None:
        self._http = http
        self._budget = budget
        self._scope = budget_scope
        self._settings = settings
        self._priorities = gate or PriorityGate()
        # Requests beyond the pool's connections wait here, not in httpcore's pool: its queue is scanned in full each
        # time a connection frees, and with hundreds of writes in hand that scan took most of the writer's CPU.
        self._gate = asyncio.Semaphore(MAX_CONNECTIONS)

    def _budget_key(self, path: str) -> str:
        module = path.removeprefix(API_PREFIX).strip("/").split("/", 1)[0] or "root"
        return budget_key("accessplanit", self._scope, module)

    async def _take_budget(self, key: str, *, action: str, priority: Priority) -> None:
        max_wait_s = self._settings.budget_max_wait_s
        try:
            async with self._priorities.turn(key, priority, max_wait_s=max_wait_s):
                await self._budget.take(key, max_wait_s=max_wait_s)
        except BudgetExhausted as exc:
            raise AccessplanitError(budget_exhausted(exc.retry_after_s, action=action)) from exc
        except PriorityWaitTimeout as exc:
            raise AccessplanitError(budget_exhausted(max_wait_s, action=action)) from exc

    async def _send(
        self,
        method: str,
        path: str,
        *,
        action: str,
        priority: Priority,
        params: dict[str, str] | None = None,
        json: Any = None,
    ) -> httpx.Response:
        key = self._budget_key(path)
        await self._take_budget(key, action=action, priority=priority)
        try:
            async with asyncio.timeout(self._settings.http_timeout_s):
                await self._gate.acquire()
        except TimeoutError as exc:  # what httpx's own pool timeout said before the gate
            raise AccessplanitError(
                transport_failure("Timeout", "PoolTimeout", action=action), detail="PoolTimeout"
            ) from exc
        try:
            response = await self._http.request(method, path, params=params, json=json)
        except httpx.TimeoutException as exc:
            error = transport_failure("Timeout", type(exc).__name__, action=action)
            raise AccessplanitError(error, detail=_transport_detail(exc)) from exc
        except httpx.TransportError as exc:
            error = transport_failure(type(exc).__name__, str(exc), action=action)
            raise AccessplanitError(error, detail=_transport_detail(exc)) from exc
        finally:
            self._gate.release()
        if response.status_code == 429:
            pause = _retry_after_s(response.headers.get("retry-after"), self._settings.rate_limited_pause_s)
            await self._budget.block(key, pause)
        return response

    async def request_json(
        self,
        method: str,
        path: str,
        *,
        action: str,
        priority: Priority,
        params: dict[str, str] | None = None,
        json: Any = None,
        missing_ok: bool = False,
    ) -> Any:
        """Any call (`path` from the tenant's root): its JSON answer, None for a 404 when `missing_ok`."""
        response = await self._send(method, path, action=action, priority=priority, params=params, json=json)
        if missing_ok and response.status_code == 404:
            return None
        if not response.is_success:
            error = classify_response(
                response.status_code,
                response.content,
                retry_after=response.headers.get("retry-after"),
                action=action,
            )
            raise AccessplanitError(error, response.status_code)
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            error = ErrorInfo(
                error_class="UnexpectedAnswer",
                message=f"accessplanit answered {response.status_code} to {action} with a body that is not JSON",
                permanent=False,
            )
            raise AccessplanitError(error, response.status_code) from exc

    async def _record(
        self, method: str, path: str, *, action: str, priority: Priority, json: Any = None
    ) -> dict[str, Any]:
        found = await self.request_json(method, path, action=action, priority=priority, json=json)
        if not isinstance(found, dict):
            error = ErrorInfo(
                error_class="UnexpectedAnswer",
                message=f"accessplanit's answer to {action} is not a User record",
                permanent=False,
            )
            raise AccessplanitError(error)
        return found

    async def get_user(self, user_id: str, *, priority: Priority) -> dict[str, Any] | None:
        """The user, or None when accessplanit does not know it (removed).

        Read as accessplanit's own demo client reads one record, `GET /User?$filter=ID eq '…'`
        (`Services/FluentUrlBuilder.cs`): whether `GET /User/{id}` works in v2 is unconfirmed (reference §4)."""
        action = f"read user {user_id}"
        params = {"$filter": f"ID eq {odata_string(user_id)}"}
        found = await self.request_json("GET", f"{API_PREFIX}/User", action=action, priority=priority, params=params)
        return next((r for r in _results(found, action) if str(r.get("ID")) == user_id), None)

    async def list_users(
        self,
        *,
        filter: str,
        orderby: str,
        top: int,
        select: str | None = None,
        skip: int | None = None,
        action: str,
        priority: Priority,
    ) -> list[dict[str, Any]]:
        params = {"$orderby": orderby, "$top": str(top)}
        if filter:
            params["$filter"] = filter
        if select:
            params["$select"] = select
        if skip is not None:
            params["$skip"] = str(skip)
        found = await self.request_json("GET", f"{API_PREFIX}/User", action=action, priority=priority, params=params)
        return _results(found, action)

    async def users_by_email(self, email: str, *, priority: Priority) -> list[dict[str, Any]]:
        """Every user with this address (accessplanit compares case-insensitively), most recently updated first."""
        return await self.list_users(
            filter=f"Email eq {odata_string(email)}",
            orderby="DateUpdated desc",
            top=100,
            action=f"look up users by email {email}",
            priority=priority,
        )

    async def create_user(self, body: dict[str, Any], *, priority: Priority) -> dict[str, Any]:
        return await self._record("POST", f"{API_PREFIX}/User", action="create a user", priority=priority, json=body)

    async def update_user(self, user_id: str, body: dict[str, Any], *, priority: Priority) -> dict[str, Any]:
        return await self._record(
            "PUT", _user_path(user_id), action=f"update user {user_id}", priority=priority, json=body
        )


class AccessplanitClients:
    """One pooled HTTP client per (tenant, key), created on first use; the budget and its priority gate are shared
    by all of them."""

    def __init__(
        self,
        redis: Redis | None,
        settings: AccessplanitSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """`redis` None: a process without Tandem's Redis pays from a budget of its own (`LocalRateBudget`)."""
        self._settings = settings
        self._transport = transport
        self._budget: RequestBudget = (
            RateBudget(redis, limit=settings.requests_per_window, window_s=settings.window_s)
            if redis is not None
            else LocalRateBudget(limit=settings.requests_per_window, window_s=settings.window_s)
        )
        self._gate = PriorityGate()
        self._clients: dict[tuple[str, str], AccessplanitClient] = {}
        self._http: list[httpx.AsyncClient] = []

    @property
    def budget(self) -> RequestBudget:
        return self._budget

    def for_instance(self, instance: InstanceConfig) -> AccessplanitClient:
        """Raises AccessplanitError (permanent) when the instance's API key cannot be resolved."""
        connection = instance.accessplanit
        try:
            api_key = resolve_secret(connection.api_key)
        except SecretUnavailable as exc:
            error = ErrorInfo(
                error_class="SecretUnavailable",
                message=f"the instance's accessplanit API key is not available: {exc}",
                permanent=True,
            )
            raise AccessplanitError(error) from exc
        return self.for_tenant(connection.base_url, api_key)

    def for_tenant(self, base_url: str, api_key: str) -> AccessplanitClient:
        """Raises AccessplanitError (permanent) when `base_url` is not accessplanit's (`tandem_shared.vendor_urls`)."""
        try:
            check_vendor_url(base_url, "accessplanit")
        except VendorUrlRefused as exc:
            refused = ErrorInfo(error_class="VendorUrlRefused", message=str(exc), permanent=True)
            raise AccessplanitError(refused) from exc
        root = base_url.rstrip("/")
        client = self._clients.get((root, api_key))
        if client is None:
            http = httpx.AsyncClient(
                base_url=root,
                headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
                timeout=httpx.Timeout(self._settings.http_timeout_s, connect=5.0),
                limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS),
                transport=self._transport,
            )
            self._http.append(http)
            client = AccessplanitClient(
                http, self._budget, budget_scope=f"{root}|{api_key}", settings=self._settings, gate=self._gate
            )
            self._clients[(root, api_key)] = client
        return client

    async def close(self) -> None:
        for http in self._http:
            await http.aclose()
        self._http.clear()
        self._clients.clear()
