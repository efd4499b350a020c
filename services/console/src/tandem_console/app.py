"""Console: `tandem.trace` into a store, and the pages and JSON API to monitor, filter, pause and replay."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from tandem_console import access_pages, api, reconcile, ui
from tandem_console.access import VIEWER, Access, install, metrics_reader
from tandem_console.actions import ActionError
from tandem_console.audit import AuditLog
from tandem_console.bootstrap import CLIENT_ID, bootstrap
from tandem_console.oidc import OidcConfig, OidcLogin
from tandem_console.sessions import RevokedSessions
from tandem_console.settings import ConsoleSettings
from tandem_console.store import TraceStore
from tandem_shared.contracts import TraceRecord, utcnow
from tandem_shared.instances import InstanceRegistry
from tandem_shared.kafka.gate import KafkaGate, service_app
from tandem_shared.logging import get_logger
from tandem_shared.metrics import render as render_metrics
from tandem_shared.tracing import publish_trace

log = get_logger("tandem.console")


async def purge_periodically(store: TraceStore, settings: ConsoleSettings) -> None:
    while True:
        try:
            removed = await asyncio.to_thread(store.purge, utcnow() - timedelta(days=settings.retention_days))
            if removed:
                log.info("old executions purged", count=removed, retention_days=settings.retention_days)
        except Exception as exc:  # the next round tries again; serving pages matters more
            log.warning("purge failed", error=str(exc))
        await asyncio.sleep(settings.purge_interval_s)


def create_app(
    settings: ConsoleSettings | None = None, registry: InstanceRegistry | None = None
) -> FastAPI | KafkaGate:
    """The console's app (`service_app`)."""
    # Its /metrics answers only a token of the `metrics` role, which the app checks: closed while it waits.
    return service_app(
        "console", settings, ConsoleSettings, CLIENT_ID, lambda loaded: app(loaded, registry), open_metrics=False
    )


def app(settings: ConsoleSettings, registry: InstanceRegistry | None = None) -> FastAPI:
    built = bootstrap(settings, registry=registry)
    store, consumer, producer, registry = built.store, built.consumer, built.producer, built.registry
    audit = AuditLog(store.engine)

    async def publish(record: TraceRecord) -> None:
        await asyncio.wait_for(publish_trace(producer, record), timeout=settings.publish_timeout_s)

    access = Access.build(settings, audit, publish, RevokedSessions(store.engine))
    oidc_config = OidcConfig.of(settings)
    oidc = OidcLogin(oidc_config) if oidc_config else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(store.create)
        await asyncio.to_thread(audit.create)
        if settings.rebuild_on_start:
            await asyncio.to_thread(store.reset)
            log.info("store emptied; rebuilding from tandem.trace")
        await registry.start()
        await producer.start()
        await consumer.start()
        consumer.follow()
        await built.erasure.start()
        await built.reconcile.start()
        purge = asyncio.create_task(purge_periodically(store, settings), name="purge")
        try:
            yield
        finally:
            purge.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await purge
            await built.erasure.stop()
            await built.reconcile.stop()
            await consumer.stop()
            await producer.stop()
            await registry.stop()
            if oidc is not None:
                await oidc.close()
            store.close()

    # No /docs, /redoc or /openapi.json open to anyone: the API's description is for people who may use it
    # (`/api/openapi.json`, viewers), and the interactive pages' scripts come from a CDN the CSP refuses anyway.
    app = FastAPI(
        title="Tandem console",
        description="Executions rebuilt from tandem.trace: filter them, read their steps, pause instances, replay.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.console = built.console
    app.state.consumer = consumer
    app.state.oidc = oidc
    app.state.erasure_requests = built.erasure_requests
    app.state.reconcile = built.reconcile

    @app.exception_handler(ActionError)
    async def action_error(request: Request, exc: ActionError) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"status": exc.status, "detail": exc.message}, status_code=exc.status)
        return ui.error_page(request, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_input(request: Request, exc: RequestValidationError) -> Response:
        problems = [f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors()]
        if request.url.path.startswith("/api/"):
            return JSONResponse({"status": 422, "detail": problems}, status_code=422)
        return ui.error_page(request, ActionError(422, "; ".join(problems)))

    @app.get("/health/live", include_in_schema=False)
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/health/ready", include_in_schema=False)
    async def ready() -> Response:
        ok = await producer.ping(timeout=3.0)
        return JSONResponse({"kafka": "ok" if ok else "unreachable"}, status_code=200 if ok else 503)

    @app.get("/api/openapi.json", include_in_schema=False, dependencies=[VIEWER])
    async def openapi() -> dict[str, Any]:
        return app.openapi()

    @app.get("/metrics", include_in_schema=False, dependencies=[Depends(metrics_reader)])
    async def metrics() -> Response:
        body, content_type = render_metrics()
        return Response(body, media_type=content_type)

    install(app, access, lambda request, status, message: ui.error_page(request, ActionError(status, message)))
    app.include_router(access_pages.router)
    # Every page and API route needs at least the viewer role; state changes add `OPERATOR` route by route.
    app.include_router(api.router, dependencies=[VIEWER])
    app.include_router(reconcile.router, dependencies=[VIEWER])
    app.include_router(ui.router, dependencies=[VIEWER])
    return app
