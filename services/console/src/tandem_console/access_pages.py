"""Logging in and out, the session's CSRF token for API clients, and the audit log (page and JSON)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from tandem_console.access import VIEWER, Refused, access_of, record, safe_next
from tandem_console.audit import AuditEntry
from tandem_console.oidc import OidcError, OidcLogin
from tandem_console.ui import render
from tandem_shared.logging import get_logger

log = get_logger("tandem.console.access")

AUDIT_PAGE = 200
# Who a refused login is audited as: people type their password into the name field.
NOT_NAMED = "(not named)"

router = APIRouter(include_in_schema=False)


def login_page(request: Request, next_: str, *, error: str | None = None, status_code: int = 200) -> Response:
    access = access_of(request)
    oidc = getattr(request.app.state, "oidc", None)
    return render(
        request,
        "login.html",
        "",
        status_code=status_code,
        next=safe_next(next_),
        error=error,
        local_accounts=bool(access.accounts.users),
        oidc_name=oidc.display_name if oidc else None,
    )


@router.get("/login")
async def login_form(request: Request, next: str = "/") -> Response:
    if access_of(request).settings.login_disabled:
        return RedirectResponse(safe_next(next), status_code=303)
    return login_page(request, next)


@router.post("/login")
async def log_in(
    request: Request,
    name: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=1000)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    access = access_of(request)
    # Login CSRF: a foreign page must not log the browser in under the attacker's account.
    try:
        await access.check_csrf(request, None)
    except Refused as exc:
        return login_page(request, next, error=exc.message, status_code=403)
    wait_s = access.throttle.wait_s(name, access.clock())
    if wait_s > 0:
        log.warning("login refused: too many wrong passwords for one name")
        message = f"too many wrong passwords: try again in {max(1, round(wait_s / 60))} min"
        await record(request, access, NOT_NAMED, "password", 429, action="log_in")
        return login_page(request, next, error=message, status_code=429)
    who = await asyncio.to_thread(access.accounts.login, name, password)
    if who is None:
        access.throttle.failed(name, access.clock())
        # Not the name: people type their password into it.
        log.warning("login refused")
        await record(request, access, NOT_NAMED, "password", 401, action="log_in")
        return login_page(request, next, error="wrong name or password", status_code=401)
    access.throttle.succeeded(name)
    access.log_in(request, who)
    await record(request, access, who.name, who.via, 303, action="log_in")
    return RedirectResponse(safe_next(next), status_code=303)


def oidc_of(request: Request) -> OidcLogin | None:
    oidc: OidcLogin | None = getattr(request.app.state, "oidc", None)
    return oidc


@router.get("/login/oidc")
async def oidc_start(request: Request, next: str = "/") -> Response:
    """To the identity provider; state, nonce and the PKCE verifier wait in this browser's session cookie."""
    oidc = oidc_of(request)
    if oidc is None:
        return login_page(request, next, error="no identity provider is configured", status_code=404)
    access = access_of(request)
    redirect_uri = access.settings.oidc_redirect_uri or str(request.url_for("oidc_callback"))
    try:
        url, pending = await oidc.start(redirect_uri)
    except Exception as exc:  # the provider is down or misconfigured: say so, keep the other ways in
        log.error("identity provider unreachable", error=str(exc))
        return login_page(request, next, error="the identity provider cannot be reached", status_code=503)
    access.set_pending(request, {**pending, "next": safe_next(next)})
    return RedirectResponse(url, status_code=303)


@router.get("/login/oidc/callback")
async def oidc_callback(
    request: Request, code: str | None = None, state: str | None = None, error: str | None = None
) -> Response:
    oidc = oidc_of(request)
    access = access_of(request)
    pending = access.session_of(request).pending or {}
    next_ = pending.get("next", "/")
    if oidc is None:
        return login_page(request, next_, error="no identity provider is configured", status_code=404)
    if error or not code or not state:
        return login_page(request, next_, error=f"the identity provider did not log you in ({error})", status_code=401)
    try:
        who = await oidc.finish(pending, code=code, state=state)
    except OidcError as exc:
        log.warning("OpenID Connect login refused", reason=str(exc))
        access.set_pending(request, {})
        await record(request, access, NOT_NAMED, "oidc", 403, action="log_in")
        return login_page(request, next_, error=str(exc), status_code=403)
    access.log_in(request, who)
    await record(request, access, who.name, who.via, 303, action="log_in")
    return RedirectResponse(safe_next(next_), status_code=303)


@router.post("/logout")
async def log_out(request: Request) -> Response:
    access = access_of(request)
    await access.check_csrf(request, None)
    who = access.session_of(request).principal
    await access.log_out(request)
    if who is not None:
        await record(request, access, who.name, who.via, 303, action="log_out")
    return RedirectResponse("/login", status_code=303)


@router.get("/api/session")
async def session(request: Request) -> dict[str, str | None]:
    """For a JSON client on a browser session: who it is, and the CSRF token its POSTs carry (X-CSRF-Token)."""
    access = access_of(request)
    who = access.authenticate(request)
    return {
        "name": who.name if who else None,
        "role": who.role.label if who else None,
        "csrf_token": access.csrf_token(request),
    }


@router.get("/audit", dependencies=[VIEWER])
async def audit_page(request: Request) -> Response:
    entries = await asyncio.to_thread(access_of(request).audit.latest, AUDIT_PAGE)
    return render(request, "audit.html", "audit", entries=entries, limit=AUDIT_PAGE)


@router.get("/api/audit", dependencies=[VIEWER])
async def audit_entries(request: Request) -> list[AuditEntry]:
    return await asyncio.to_thread(access_of(request).audit.latest, AUDIT_PAGE)
