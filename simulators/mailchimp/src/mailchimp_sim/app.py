"""Application factory and the ``/3.0`` gateway: auth, per-account concurrency limit, injected latency/faults."""

import asyncio
import base64
import binascii
import json
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailchimp_sim import api, sim_api
from mailchimp_sim.context import ACCOUNT_STATE_KEY, Sim
from mailchimp_sim.controls import Controls, FaultRule, Stats
from mailchimp_sim.errors import ERROR_DOC_URL, INVALID_RESOURCE_DETAIL, ApiError, FieldError
from mailchimp_sim.seed import seed
from mailchimp_sim.service import AudienceService
from mailchimp_sim.settings import SimSettings
from mailchimp_sim.store import Store
from mailchimp_sim.webhooks import Dispatcher

PROBLEM_JSON = "application/problem+json; charset=utf-8"
API_PREFIX = "/3.0"
# The sim serves every data centre on one host; a Host like "us6.api.mailchimp.com" names the dc the client
# believes in, anything else (127.0.0.1, localhost) is accepted for any key.
_DC_HOST = re.compile(r"^(us\d+)\.", re.IGNORECASE)


def _key_invalid() -> ApiError:
    return ApiError(
        401, "API Key Invalid", "Your API key may be invalid, or you've attempted to access the wrong datacenter."
    )


_TRIGGERABLE = {
    "APIKeyMissing": (401, "API Key Missing"),
    "APIKeyInvalid": (401, "API Key Invalid"),
    "Forbidden": (403, "Forbidden"),
    "UserDisabled": (403, "User Disabled"),
    "WrongDatacenter": (403, "Wrong Datacenter"),
    "ResourceNotFound": (404, "Resource Not Found"),
    "MethodNotAllowed": (405, "Method Not Allowed"),
    "ResourceNestingTooDeep": (414, "Resource Nesting Too Deep"),
    "InvalidMethodOverride": (422, "Invalid Method Override"),
    "TooManyRequests": (429, "TooManyRequests"),
    "InternalServerError": (500, "Internal Server Error"),
    "ComplianceRelated": (403, "Compliance Related"),
}
_HTML_502 = (
    "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center>"
    "<p>The request may have timed out and been closed by our CDN.</p></body></html>"
)


def problem(error: ApiError) -> Response:
    body: dict[str, object] = {
        "type": ERROR_DOC_URL,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "instance": str(uuid.uuid4()),
    }
    if error.errors:
        body["errors"] = [{"field": e.field, "message": e.message} for e in error.errors]
    return Response(json.dumps(body), error.status, headers=error.headers, media_type=PROBLEM_JSON)


def api_key_from(authorization: str | None) -> str:
    if not authorization:
        raise ApiError(401, "API Key Missing", "Your request did not include an API key.")
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() == "bearer":
        return credentials.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise _key_invalid() from None
        return decoded.partition(":")[2]
    raise _key_invalid()


def authenticate(store: Store, authorization: str | None, host: str | None) -> str:
    """The account id behind a request's key; 401 for unknown keys or a dc other than the Host's."""
    key = api_key_from(authorization)
    account = store.account_for_key(key) if key else None
    key_dc = key.rpartition("-")[2] if "-" in key else ""
    if account is None or not key_dc:
        raise _key_invalid()
    host_dc = _DC_HOST.match(host or "")
    if host_dc and host_dc.group(1).lower() != key_dc.lower():
        raise _key_invalid()
    return account


# (path regex, methods, name) of every /3.0 route, matched by hand: Starlette's Route.matches also builds a child
# scope and converts parameters for each route it tries, which cost more than the regexes themselves.
_ROUTE_TABLE = [(r.path_regex, r.methods, r.name) for r in api.router.routes if isinstance(r, APIRoute)]


def route_name(method: str, path: str) -> str:
    """The name of the /3.0 route a request will hit, decided before routing (controls are per route)."""
    partial = None
    for regex, methods, name in _ROUTE_TABLE:
        if regex.match(path):
            if not methods or method in methods:
                return name
            if partial is None:
                partial = name
    return partial or "unmatched"


async def fault_response(rule: FaultRule) -> Response:
    match rule.kind:
        case "500":
            return problem(ApiError(500, "Internal Server Error", "An unexpected internal error has occurred."))
        case "503":
            return problem(ApiError(503, "Service Unavailable", "The service is temporarily unavailable."))
        case "429":
            return problem(
                ApiError(429, "TooManyRequests", "You have exceeded the limit of 10 simultaneous connections.")
            )
        case "429_empty":
            return Response(status_code=429)
        case "403_empty":
            return Response(status_code=403)
        case "502_html":
            return Response(_HTML_502, 502, media_type="text/html")
        case "timeout":
            # Hang past the client's timeout while holding the in-flight slot, like a slow Mailchimp request.
            await asyncio.sleep(rule.hang_ms / 1000)
            return problem(ApiError(504, "Gateway Timeout", "The request took too long to process."))


def create_app(settings: SimSettings | None = None) -> FastAPI:
    settings = settings or SimSettings()
    store = Store(settings.data_dir)
    seed(store, settings)
    dispatcher = Dispatcher(store, settings)
    sim = Sim(
        settings=settings,
        store=store,
        service=AudienceService(store, settings, dispatcher.on_change),
        dispatcher=dispatcher,
        controls=Controls(),
        stats=Stats(settings.max_in_flight_per_account),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await dispatcher.start()
        yield
        await dispatcher.stop()
        store.close()

    app = FastAPI(title="Mailchimp Marketing API simulator", lifespan=lifespan, docs_url="/_sim/docs")
    app.state.sim = sim
    app.include_router(api.router)
    app.include_router(sim_api.router)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, error: ApiError) -> Response:
        return problem(error)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, error: StarletteHTTPException) -> Response:
        if error.status_code == 405:
            detail = "The requested method and resource are not compatible."
            return problem(ApiError(405, "Method Not Allowed", detail, headers=dict(error.headers or {})))
        if error.status_code == 404:
            return problem(ApiError(404, "Resource Not Found", "The requested resource could not be found."))
        return problem(ApiError(error.status_code, "Bad Request", str(error.detail)))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, error: Exception) -> Response:
        # Still a problem document, so clients exercise their 500 handling rather than a parse failure.
        return problem(ApiError(500, "Internal Server Error", f"Simulator error: {type(error).__name__}"))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, error: RequestValidationError) -> Response:
        errors = [FieldError(".".join(str(p) for p in e["loc"][1:]), str(e["msg"])) for e in error.errors()]
        return problem(ApiError(400, "Invalid Resource", INVALID_RESOURCE_DETAIL, errors))

    app.add_middleware(Gateway, sim=sim)
    return app


class Gateway:
    """What Mailchimp does before a ``/3.0`` route runs: auth, the per-account in-flight limit, then the injected
    latency and faults; every answer is counted per route in the stats.

    A plain ASGI middleware rather than ``@app.middleware("http")``: that one wraps each request in extra tasks and
    memory streams, which cost more CPU than most of the simulator's routes.
    """

    def __init__(self, app: ASGIApp, sim: Sim) -> None:
        self._app = app
        self._sim = sim

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX):
            await self._app(scope, receive, send)
            return
        route = route_name(scope["method"], scope["path"])
        status = 500

        async def counted_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._through_gateway(scope, receive, counted_send, route)
        finally:
            self._sim.stats.record(route, status)

    async def _through_gateway(self, scope: Scope, receive: Receive, send: Send, route: str) -> None:
        sim = self._sim
        headers = Headers(scope=scope)
        try:
            account = authenticate(sim.store, headers.get("authorization"), headers.get("host"))
        except ApiError as error:
            await problem(error)(scope, receive, send)
            return
        if not sim.stats.enter(account):
            too_many = ApiError(429, "TooManyRequests", "You have exceeded the limit of 10 simultaneous connections.")
            await problem(too_many)(scope, receive, send)
            return
        try:
            response = await _injected(sim, route, headers)
            if response is not None:
                await response(scope, receive, send)
                return
            scope.setdefault("state", {})[ACCOUNT_STATE_KEY] = account
            await self._app(scope, receive, send)
        finally:
            sim.stats.leave(account)


async def _injected(sim: Sim, route: str, headers: Headers) -> Response | None:
    """Latency, then an injected fault or an ``X-Trigger-Error`` answer, if any."""
    latency = sim.controls.latency_ms(route)
    if latency:
        await asyncio.sleep(latency / 1000)
    fault = sim.controls.take_fault(route)
    if fault is not None:
        return await fault_response(fault)
    trigger = headers.get("x-trigger-error")
    if trigger:
        status, title = _TRIGGERABLE.get(trigger, (400, trigger))
        return problem(ApiError(status, title, f"Triggered by X-Trigger-Error: {trigger}."))
    return None
