"""Who may use the console, over HTTP: the Host allow-list, browser protections, sessions, login, roles, CSRF and
the audit of operator actions.

- Every page and API route needs the viewer role (`app.py` puts `VIEWER` on both routers).
- Every state-changing route takes `dependencies=[OPERATOR]`: the operator role, a CSRF token when the caller is a
  browser session (a bearer token is no ambient credential, so it needs none), and an audit entry written once the
  action is answered. A new operator action needs that one line and nothing else.
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

from tandem_console.audit import AuditEntry, AuditLog
from tandem_console.credentials import Accounts, LoginThrottle, Principal, Role, Session, SessionCodec
from tandem_console.sessions import RevokedSessions
from tandem_console.settings import ConsoleSettings
from tandem_shared.audit import audit_trace
from tandem_shared.contracts import TraceRecord, utcnow
from tandem_shared.logging import get_logger

log = get_logger("tandem.console.access")

COOKIE = "tandem_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Probes reach the pod by its IP, with no login: they answer nothing about the data.
OPEN_PATHS = frozenset({"/health/live", "/health/ready"})
# Prometheus, too, names the pod by IP; /metrics needs a token instead.
HOST_EXEMPT = OPEN_PATHS | {"/metrics"}
# Kept for as long as the audit log is: a contact's address in a replay filter is personal data, so it is left out.
PERSONAL_PARAMS = frozenset({"email"})
LOGIN_PATHS = frozenset({"/login", "/logout", "/login/oidc", "/login/oidc/callback"})

# No script at all; styles inline (the pages carry their own stylesheet); forms post to the console only; no framing.
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class NotLoggedIn(Exception):
    """No valid session or token: pages send the browser to /login, the API answers 401."""


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _host_of(url: str) -> str | None:
    """The host name of a URL; None for one that does not parse (`[]`, `[::1`: urlsplit raises)."""
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def _netloc_of(url: str) -> str | None:
    try:
        return urlsplit(url).netloc
    except ValueError:
        return None


def is_loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


# Publishes a trace record (an audit entry) and returns once Kafka has it.
Publish = Callable[[TraceRecord], Awaitable[None]]


@dataclass
class Access:
    settings: ConsoleSettings
    accounts: Accounts
    codec: SessionCodec
    audit: AuditLog
    clock: Callable[[], float] = time.time
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    publish: Publish | None = None
    # Sessions ended by a logout (None: a logout only replaces the browser's cookie).
    revoked: RevokedSessions | None = None

    @classmethod
    def build(
        cls,
        settings: ConsoleSettings,
        audit: AuditLog,
        publish: Publish | None = None,
        revoked: RevokedSessions | None = None,
    ) -> Access:
        if settings.session_secret is not None:
            secret = settings.session_secret.get_secret_value().encode()
        else:
            log.warning("no session secret set: sessions end when this process stops")
            secret = secrets.token_bytes(32)
        accounts = Accounts.load(settings.accounts_file) if settings.accounts_file else Accounts()
        if not (accounts.users or accounts.tokens or settings.login_disabled):
            log.warning("no operator accounts or tokens configured: nobody can log in", see="docs/security.md")
        return cls(settings, accounts, SessionCodec(secret), audit, publish=publish, revoked=revoked)

    def host_allowed(self, host: str | None) -> bool:
        if not host:
            return False
        name = _host_of(f"//{host}")
        return name is not None and name.lower() in self.settings.host_names

    def session_of(self, request: Request) -> Session:
        session: Session = request.state.session
        return session

    def authenticate(self, request: Request) -> Principal | None:
        if self.settings.login_disabled:
            if not is_loopback(request.client.host if request.client else None):
                raise Refused(403, "the login is turned off on this console: loopback callers only")
            return Principal("local operator (login off)", Role.OPERATOR, "no-login")
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            who = self.accounts.bearer(credential.strip())
            if who is None:
                raise NotLoggedIn("unknown token")
            return who
        return self.session_of(request).principal

    def require(self, request: Request, role: Role) -> Principal:
        who = self.authenticate(request)
        if who is None:
            raise NotLoggedIn("log in first")
        # Before the role check: a refused attempt is audited under its name too.
        request.state.principal = who
        if who.role < role:
            raise Refused(403, f"{who.name} has the {who.role.label} role; this needs the {role.label} role")
        return who

    async def check_csrf(self, request: Request, who: Principal | None) -> None:
        """A state change from a browser carries the CSRF token of its session, and no foreign Origin."""
        origin = request.headers.get("origin")
        if origin is not None and _netloc_of(origin) != request.headers.get("host", ""):
            raise Refused(403, "cross-site request refused")
        if who is not None and who.via == "token":
            return
        token = request.headers.get("x-csrf-token")
        if token is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            token = str((await request.form()).get("csrf_token") or "") or None
        if not self.codec.csrf_ok(self.session_of(request), token):
            raise Refused(403, "missing or wrong CSRF token: reload the page and try again")

    def csrf_token(self, request: Request) -> str:
        return self.codec.csrf_token(self.session_of(request))

    def log_in(self, request: Request, who: Principal) -> None:
        request.state.session = self.session_of(request).logged_in(who, self.clock(), self.settings.session_ttl_s)
        log.info("logged in", who=who.name, role=who.role.label, via=who.via)

    async def log_out(self, request: Request) -> None:
        """A new, anonymous session for this browser, and the old one revoked for whoever else holds its cookie."""
        ended = self.session_of(request)
        request.state.session = Session.anonymous(self.clock(), self.settings.session_ttl_s)
        if self.revoked is not None and ended.principal is not None:
            await asyncio.to_thread(self.revoked.revoke, ended.sid, ended.expires, self.clock())

    async def arrived(self, cookie: str | None) -> Session | None:
        """The session a request's cookie carries: None if there is none, it is forged or expired, or it was
        logged out."""
        session = self.codec.decode(cookie, self.clock())
        if session is None or session.principal is None or self.revoked is None:
            return session
        if await asyncio.to_thread(self.revoked.is_revoked, session.sid):
            return None
        return session

    def set_pending(self, request: Request, pending: dict[str, str]) -> None:
        old = self.session_of(request)
        request.state.session = Session(old.sid, old.expires, old.name, old.role, old.via, pending or None)


def access_of(request: Request) -> Access:
    access: Access = request.app.state.access
    return access


async def viewer(request: Request) -> Principal:
    return access_of(request).require(request, Role.VIEWER)


async def metrics_reader(request: Request) -> Principal:
    return access_of(request).require(request, Role.METRICS)


async def operator_action(request: Request) -> Principal:
    access = access_of(request)
    who = access.require(request, Role.OPERATOR)
    await access.check_csrf(request, who)
    return who


VIEWER = Depends(viewer)
OPERATOR = Depends(operator_action)


def wants_json(request: Request) -> bool:
    return request.url.path.startswith(("/api/", "/metrics"))


def install(app: FastAPI, access: Access, error_page: Callable[[Request, int, str], Response]) -> None:
    """The middleware (hosts, sessions, headers, audit) and the answers to NotLoggedIn and Refused."""
    app.state.access = access

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        path = request.url.path
        if path not in HOST_EXEMPT and not access.host_allowed(request.headers.get("host")):
            response: Response = PlainTextResponse("host not allowed", status_code=400)
            response.headers.update(SECURITY_HEADERS)
            return response
        arrived = await access.arrived(request.cookies.get(COOKIE))
        request.state.session = arrived or Session.anonymous(access.clock(), access.settings.session_ttl_s)
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        response.headers.setdefault("Cache-Control", "no-store")
        current: Session = request.state.session
        bearer = request.headers.get("authorization", "").lower().startswith("bearer ")
        if current is not arrived and not bearer and path not in HOST_EXEMPT:
            response.set_cookie(
                COOKIE,
                access.codec.encode(current),
                max_age=max(0, int(current.expires - access.clock())),
                httponly=True,
                secure=access.settings.cookie_secure,
                # Lax, not Strict: the identity provider's redirect back is a cross-site navigation. Cross-site POSTs
                # carry no cookie all the same, and every state change needs the CSRF token besides.
                samesite="lax",
                path="/",
            )
        # Every state change by someone known is an operator action (login and logout aside), refused ones too.
        who: Principal | None = getattr(request.state, "principal", None)
        if who is not None and request.method not in SAFE_METHODS and path not in LOGIN_PATHS:
            await record(request, access, who.name, who.via, response.status_code)
        return response

    @app.exception_handler(NotLoggedIn)
    async def not_logged_in(request: Request, exc: NotLoggedIn) -> Response:
        if wants_json(request):
            return JSONResponse(
                {"status": 401, "detail": str(exc)}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
        if request.method in SAFE_METHODS:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)
        return error_page(request, 401, "log in first")

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> Response:
        who: Principal | None = getattr(request.state, "principal", None)
        if request.method not in SAFE_METHODS:
            log.warning(
                "state change refused", path=request.url.path, reason=exc.message, who=who.name if who else None
            )
        if wants_json(request):
            return JSONResponse({"status": exc.status, "detail": exc.message}, status_code=exc.status)
        return error_page(request, exc.status, exc.message)


async def record(
    request: Request, access: Access, who: str, via: str, outcome: int, *, action: str | None = None
) -> None:
    """The audit entry of an action: in the console's store, as a log line, and on `tandem.trace` (an
    `AuditRecord`, for dashboards and the other replicas; the store keeps each audit id once)."""
    route: Any = request.scope.get("route")
    action = action or getattr(route, "name", None) or request.url.path
    query = [(k, "(not kept)" if k in PERSONAL_PARAMS else v) for k, v in request.query_params.multi_items()]
    target = request.url.path + (f"?{urlencode(query)}" if query else "")
    entry = AuditEntry(utcnow(), who, via, action, target, outcome)
    log.info("operator action", who=who, via=via, action=action, target=target, outcome=outcome)
    try:
        await asyncio.to_thread(access.audit.record, entry)
    except Exception as exc:  # the action is done already; the log line above still says who did it
        log.error("audit entry not stored", action=action, who=who, error=str(exc))
    if access.publish is None:
        return
    instance_id = request.path_params.get("instance_id")
    try:
        await access.publish(audit_trace(entry.as_record(), instance_id if isinstance(instance_id, str) else None))
    except Exception as exc:  # kept in the store and the log line; the trace misses it, and says so here
        log.error("audit entry not published to the trace", action=action, who=who, error=str(exc))


def safe_next(target: str | None) -> str:
    """Only a path on this console: `//elsewhere` or `https://…` would make the login an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
