"""HTTP surface of the simulator: accessplanit API v2 routes under /api/v2, schema help, and /_sim controls."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Form, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import fields as catalogue
from .controls import Controls, ControlsUpdate
from .odata import ODataError, SortCache, Sorter, apply_query, sort_records
from .service import ApiError, Caller, UserService, not_found
from .settings import SimSettings
from .store import Doc, Store, digest
from .validation import FieldError
from .webhooks import WebhookDispatcher

API = "/api/v2"

MODULES = {
    m.lower(): m
    for m in ("User", "Company", "CustomFieldMetadata", "Webhook", "WebhookInstance", "SystemEventLog", "Token")
}

MODULE_FIELDS: dict[str, tuple[catalogue.FieldSpec, ...]] = {
    "User": catalogue.USER_FIELDS,
    "Company": catalogue.COMPANY_FIELDS,
    "CustomFieldMetadata": catalogue.CUSTOM_FIELD_METADATA_FIELDS,
    "Webhook": catalogue.WEBHOOK_FIELDS,
    "WebhookInstance": catalogue.WEBHOOK_INSTANCE_FIELDS,
    "SystemEventLog": catalogue.SYSTEM_EVENT_LOG_FIELDS,
}

WEBHOOK_EVENTS = ("created", "updated", "deleted")


@dataclass
class Runtime:
    settings: SimSettings
    controls: Controls
    store: Store
    dispatcher: WebhookDispatcher
    users: UserService
    user_orders: SortCache = field(default_factory=SortCache)


class RateLimited(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


class Unauthorized(Exception):
    pass


# -- path canonicalisation, latency, faults, stats -----------------------------------------------------------


def canonical_path(path: str) -> str:
    """Module names are case-insensitive: `/api/v2/user/1` is routed as `/api/v2/User/1`."""
    parts = path.split("/")
    lowered = [p.lower() for p in parts]
    if lowered[1:3] == ["api", "v2"] and len(parts) > 3:
        parts[3] = MODULES.get(lowered[3], parts[3])
    elif lowered[1:4] == ["apihelp", "v2", "modules"] and len(parts) > 4:
        parts[4] = MODULES.get(lowered[4], parts[4])
    return "/".join(parts)


Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


class SimMiddleware:
    def __init__(self, app: ASGIApp, controls: Controls, retry_after_header: bool) -> None:
        self.app = app
        self.controls = controls
        self.retry_after_header = retry_after_header

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = canonical_path(scope["path"])
        scope["path"] = path
        method = scope["method"]
        status = 500

        async def recording_send(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if path.startswith("/_sim/") or not await self._inject(method, path, recording_send):
                await self.app(scope, receive, recording_send)
        finally:
            route = scope.get("route")
            self.controls.stats[(method, getattr(route, "path", path), status)] += 1

    async def _inject(self, method: str, path: str, send: Any) -> bool:
        """Apply latency and any matching fault; True when the fault already answered the request."""
        if self.controls.latency_ms:
            await asyncio.sleep(self.controls.latency_ms / 1000)
        fault = self.controls.take_fault(method, path)
        if fault is None:
            return False
        if fault.kind == "timeout":
            release = self.controls.release
            try:
                await asyncio.wait_for(release.wait(), timeout=self.controls.hang_seconds)
            except TimeoutError:
                pass
            status = 504
        else:
            status = fault.status
        headers = [(b"content-length", b"0")]
        if status == 429 and self.retry_after_header:
            # Exactly what a real over-limit answer looks like (see the RateLimited handler).
            headers.append((b"retry-after", str(fault.retry_after).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return True


# -- dependencies --------------------------------------------------------------------------------------------


async def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


RuntimeDep = Annotated[Runtime, Depends(runtime)]


def module_of(path: str) -> str:
    parts = path.split("/")
    return parts[3] if len(parts) > 3 and parts[1] == "api" else "apihelp"


async def authenticated(request: Request, rt: RuntimeDep) -> Caller:
    """Resolve the bearer credential (API key or issued access token) and apply the per-module rate limit."""
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise Unauthorized
    credential = credential.strip()
    owner = rt.store.platform_user_for_key(credential) or rt.store.platform_user_for_token(credential, "access")
    if owner is None:
        raise Unauthorized
    caller = Caller(id=owner["ID"], name=owner["Name"], credential=digest(credential))
    controls = rt.controls
    retry_after = controls.rate_limiter.check(
        "tenant" if controls.rate_limit_scope == "tenant" else caller.credential,
        module_of(request.scope["path"]),
        controls.rate_limit_per_window,
        controls.rate_limit_window_seconds,
    )
    if retry_after is not None:
        raise RateLimited(retry_after)
    return caller


CallerDep = Annotated[Caller, Depends(authenticated)]


async def json_body(request: Request) -> object:
    raw = await request.body()
    try:
        return json.loads(raw) if raw else None
    except ValueError as exc:
        raise ApiError(400, [FieldError(None, "The request body is not valid JSON.")]) from exc


BodyDep = Annotated[object, Depends(json_body)]


def listing(
    rt: Runtime, request: Request, module: str, records: Sequence[Doc], sort: Sorter = sort_records
) -> dict[str, Any]:
    settings = rt.settings
    try:
        return apply_query(
            records,
            catalogue.field_types(MODULE_FIELDS[module]),
            request.query_params,
            top_default=settings.top_default,
            top_max=settings.top_max,
            case_insensitive=frozenset(settings.case_insensitive_fields),
            sort=sort,
        )
    except ODataError as exc:
        raise ApiError(400, [FieldError(exc.option, str(exc))]) from exc


# -- /api/v2 -------------------------------------------------------------------------------------------------

api = APIRouter(prefix=API)


@api.post("/Token")
async def token(
    grant_type: Annotated[str, Form()],
    rt: RuntimeDep,
    UserName: Annotated[str | None, Form()] = None,
    Password: Annotated[str | None, Form()] = None,
    username: Annotated[str | None, Form()] = None,
    password: Annotated[str | None, Form()] = None,
    refresh_token: Annotated[str | None, Form()] = None,
) -> JSONResponse:
    # PascalCase as the demo client sends it (Services/TokenHandler.cs) or lowercase as OAuth 2 clients do.
    settings = rt.settings
    owner = None
    if grant_type == "password":
        owner = rt.store.platform_user_for_password(UserName or username or "", Password or password or "")
    elif grant_type == "refresh_token" and settings.token_refresh_enabled:
        owner = rt.store.platform_user_for_token(refresh_token or "", "refresh")
    else:
        return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
    if owner is None:
        body = {"error": "invalid_grant", "error_description": "The user name or password is incorrect."}
        return JSONResponse(body, status_code=400)
    return JSONResponse(
        {
            "access_token": rt.store.issue_token("access", owner["ID"], settings.token_ttl_seconds),
            "token_type": "bearer",
            "expires_in": settings.token_ttl_seconds,
            "refresh_token": rt.store.issue_token("refresh", owner["ID"], settings.refresh_token_ttl_seconds),
            "userID": owner["ID"],
            "refresh_token_expires_in": settings.refresh_token_ttl_seconds,
        }
    )


@api.get("/User")
async def list_users(request: Request, rt: RuntimeDep, _: CallerDep) -> Any:
    store = rt.store
    return listing(rt, request, "User", store.users_view(), rt.user_orders.sorter(store.users_version))


@api.get("/User/{user_id}")
async def get_user(user_id: str, rt: RuntimeDep, _: CallerDep) -> Doc:
    return rt.users.get(user_id)


@api.post("/User", status_code=201)
async def create_user(
    response: Response,
    body: BodyDep,
    rt: RuntimeDep,
    caller: CallerDep,
    upsert: bool = False,
) -> Doc:
    if not upsert:
        return rt.users.create(caller, body)
    if not rt.controls.upsert_enabled:
        raise ApiError(400, [FieldError(None, "Upsert POST is not enabled on this platform.")])
    user, created = rt.users.upsert(caller, body)
    response.status_code = 201 if created else 200
    return user


@api.put("/User/{user_id}")
async def update_user(
    user_id: str,
    body: BodyDep,
    rt: RuntimeDep,
    caller: CallerDep,
) -> Doc:
    return rt.users.update(caller, user_id, body)


@api.delete("/User/{user_id}")
async def delete_user(user_id: str, rt: RuntimeDep, caller: CallerDep) -> Response:
    rt.users.delete(caller, user_id)
    return Response(status_code=200)


@api.get("/Company")
async def list_companies(request: Request, rt: RuntimeDep, _: CallerDep) -> Any:
    return listing(rt, request, "Company", rt.store.companies())


@api.get("/Company/{company_id}")
async def get_company(company_id: str, rt: RuntimeDep, _: CallerDep) -> Doc:
    return _by_id(rt.store.companies(), "Company", company_id)


@api.get("/CustomFieldMetadata")
async def list_custom_fields(request: Request, rt: RuntimeDep, _: CallerDep) -> Any:
    return listing(rt, request, "CustomFieldMetadata", [d.to_json() for d in rt.store.custom_fields()])


@api.post("/Webhook", status_code=201)
async def create_webhook(body: BodyDep, rt: RuntimeDep, caller: CallerDep) -> Doc:
    errors = webhook_errors(body)
    if errors:
        raise ApiError(400, errors)
    assert isinstance(body, dict)
    secret = body.get("Secret") or None
    if secret is not None and not rt.controls.webhook_signing_enabled:
        message = "Webhook signing is not enabled on this platform; register the webhook without a Secret."
        raise ApiError(400, [FieldError("Secret", message)])
    doc = {
        "Module": MODULES[body["Module"].lower()],
        "Events": list(dict.fromkeys(body["Events"])),
        "TargetUrl": body["TargetUrl"],
        "HasSecret": secret is not None,
        "CreatedByID": caller.id,
    }
    return rt.store.add_webhook(doc, secret)


@api.get("/Webhook")
async def list_webhooks(request: Request, rt: RuntimeDep, _: CallerDep) -> Any:
    return listing(rt, request, "Webhook", rt.store.webhooks())


@api.get("/Webhook/{webhook_id}")
async def get_webhook(webhook_id: str, rt: RuntimeDep, _: CallerDep) -> Doc:
    return _by_id(rt.store.webhooks(), "Webhook", webhook_id)


@api.delete("/Webhook/{webhook_id}")
async def delete_webhook(webhook_id: str, rt: RuntimeDep, _: CallerDep) -> Response:
    if not rt.store.remove_webhook(webhook_id):
        raise not_found("Webhook", webhook_id)
    return Response(status_code=200)


@api.get("/WebhookInstance")
async def list_webhook_instances(request: Request, rt: RuntimeDep, _: CallerDep) -> Any:
    return listing(rt, request, "WebhookInstance", rt.store.instances())


@api.get("/WebhookInstance/{instance_id}")
async def get_webhook_instance(instance_id: str, rt: RuntimeDep, _: CallerDep) -> Doc:
    return _by_id(rt.store.instances(), "WebhookInstance", instance_id)


@api.get("/SystemEventLog")
async def list_system_events(request: Request, rt: RuntimeDep, _: CallerDep) -> Any:
    return listing(rt, request, "SystemEventLog", rt.store.audit())


def _by_id(records: list[Doc], module: str, object_id: str) -> Doc:
    found = next((r for r in records if r["ID"] == object_id), None)
    if found is None:
        raise not_found(module, object_id)
    return found


def webhook_errors(body: object) -> list[FieldError]:
    if not isinstance(body, dict):
        return [FieldError(None, "The request body must be a JSON object.")]
    errors = []
    module = body.get("Module")
    if not isinstance(module, str) or module.lower() != "user":
        errors.append(FieldError("Module", "Only the 'User' module can be subscribed to."))
    events = body.get("Events")
    if not isinstance(events, list) or not events or any(e not in WEBHOOK_EVENTS for e in events):
        errors.append(FieldError("Events", f"'Events' must be a non-empty list of: {', '.join(WEBHOOK_EVENTS)}."))
    url = body.get("TargetUrl")
    if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
        errors.append(FieldError("TargetUrl", "'TargetUrl' must be an http(s) URL."))
    secret = body.get("Secret")
    if secret is not None and not isinstance(secret, str):
        errors.append(FieldError("Secret", "'Secret' must be a string."))
    return errors


# -- schema help ---------------------------------------------------------------------------------------------

help_router = APIRouter()


@help_router.get("/apihelp/v2/modules/{module}")
async def module_schema(module: str, rt: RuntimeDep, caller: CallerDep) -> Any:
    specs = MODULE_FIELDS.get(module)
    if specs is None:
        raise ApiError(404, [FieldError(None, f"Unknown module '{module}'.")])
    fields: list[Doc] = [
        {
            "Name": s.name,
            "Type": s.type,
            "MaxLength": s.max_length,
            "Mandatory": s.mandatory,
            "Writable": s.writable,
            "Format": s.format,
            "Options": list(s.options) if s.options else None,
            "CustomField": False,
        }
        for s in specs
    ]
    if module == "User":
        writable = rt.controls.custom_fields_writable or caller.id in rt.settings.ui_user_ids
        for d in rt.store.custom_fields():
            spec_type = catalogue.CUSTOM_FIELD_TYPES[d.type]
            fields.append(
                {
                    "Name": f"CustomFields/{d.name}",
                    "Type": spec_type,
                    "MaxLength": d.max_length,
                    "Mandatory": d.mandatory,
                    "Writable": writable,
                    "Format": catalogue.LOCAL_DATETIME_FORMAT if spec_type == "datetime" else None,
                    "Options": list(d.options) if d.options else None,
                    "CustomField": True,
                }
            )
    return {"Module": module, "Fields": fields}


# -- /_sim ---------------------------------------------------------------------------------------------------

sim = APIRouter(prefix="/_sim")


@sim.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@sim.get("/controls")
async def get_controls(rt: RuntimeDep) -> dict[str, object]:
    return rt.controls.snapshot()


@sim.post("/controls")
async def set_controls(update: ControlsUpdate, rt: RuntimeDep) -> dict[str, object]:
    rt.controls.apply(update)
    return rt.controls.snapshot()


@sim.post("/reset")
async def reset(rt: RuntimeDep) -> dict[str, str]:
    await rt.dispatcher.cancel_all()
    rt.store.reset()
    rt.controls.reset()
    return {"status": "reset"}


@sim.get("/stats")
async def stats(rt: RuntimeDep) -> dict[str, object]:
    rows = [
        {"method": method, "route": route, "status": status, "count": count}
        for (method, route, status), count in sorted(rt.controls.stats.items())
    ]
    return {"total": sum(rt.controls.stats.values()), "requests": rows}


# -- app -----------------------------------------------------------------------------------------------------


def create_app(settings: SimSettings | None = None) -> FastAPI:
    settings = settings or SimSettings()
    controls = Controls(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = Store(settings.db_path)
        dispatcher = WebhookDispatcher(store, settings, controls)
        app.state.runtime = Runtime(
            settings, controls, store, dispatcher, UserService(store, settings, controls, dispatcher)
        )
        dispatcher.resume()
        try:
            yield
        finally:
            await dispatcher.aclose()
            store.close()

    app = FastAPI(title="accessplanit API v2 simulator", lifespan=lifespan)
    app.add_middleware(SimMiddleware, controls=controls, retry_after_header=settings.rate_limit_retry_after_header)
    app.include_router(api)
    app.include_router(help_router)
    app.include_router(sim)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(Unauthorized)
    async def unauthorized(_: Request, __: Unauthorized) -> JSONResponse:
        body = {"Message": "Authorization has been denied for this request."}
        return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(RateLimited)
    async def rate_limited(_: Request, exc: RateLimited) -> Response:
        headers = {"Retry-After": str(max(1, round(exc.retry_after)))} if settings.rate_limit_retry_after_header else {}
        return Response(status_code=429, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [FieldError(".".join(str(p) for p in e["loc"][1:]) or None, e["msg"]) for e in exc.errors()]
        return JSONResponse({"errors": [e.to_json() for e in errors]}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"errors": [{"field": None, "message": exc.detail}]}, status_code=exc.status_code)

    return app
