"""Ingest as a process: vendor webhooks in, ChangeEvents on `tandem.changes` out. A 2xx means Kafka has the event.

The ASGI app (FastAPI, with the webhook routes also served ahead of it: `hot_routes`), its health and metrics, and
the lifespan that starts and stops what `bootstrap` built.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from starlette.routing import Route

from tandem_ingest.accessplanit_changes import UserReader
from tandem_ingest.bootstrap import CLIENT_ID, Ingest, ServiceProducer, bootstrap
from tandem_ingest.dedupe import EventClaims
from tandem_ingest.hot_routes import IngestApp
from tandem_ingest.intake import EventPublisher
from tandem_ingest.settings import IngestSettings
from tandem_shared.concurrency import Backoff
from tandem_shared.erasure import ErasureApplier
from tandem_shared.instances import InstanceRegistry
from tandem_shared.kafka.gate import KafkaGate, service_app
from tandem_shared.logging import get_logger
from tandem_shared.metrics import IngestMetricsMiddleware, MetricsEndpoint

log = get_logger("tandem.ingest")


async def keep_connecting(producer: ServiceProducer) -> None:
    """Until Kafka answers: meanwhile webhooks get 503 (the sender retries) and the poller's rounds stop early."""
    backoff = Backoff(1.0, 30.0, jitter=False)
    while True:
        await asyncio.sleep(backoff.next_delay())
        try:
            await producer.start()
        except Exception as exc:
            log.warning("kafka still unreachable", error=str(exc) or type(exc).__name__)
        else:
            log.info("kafka connected")
            return


async def follow_erasure(erasure: ErasureApplier) -> None:
    """Starts applying erasure requests once Kafka answers (ingest serves without it: see `keep_connecting`)."""
    backoff = Backoff(1.0, 30.0, jitter=False)
    while True:
        try:
            await erasure.start()
        except Exception as exc:
            await erasure.stop()
            log.warning("erasure requests not followed yet: kafka unreachable", error=str(exc) or type(exc).__name__)
            await asyncio.sleep(backoff.next_delay())
        else:
            return


def create_app(
    settings: IngestSettings | None = None,
    registry: InstanceRegistry | None = None,
    *,
    publisher: EventPublisher | None = None,
    claims: EventClaims | None = None,
    reader: UserReader | None = None,
) -> FastAPI | KafkaGate:
    """The ingest app (`service_app`). `publisher`, `claims` and `reader` replace Kafka, Redis and the accessplanit
    API in tests."""

    def build(loaded: IngestSettings) -> FastAPI:
        return serve(bootstrap(loaded, registry=registry, publisher=publisher, claims=claims, reader=reader))

    return service_app("ingest", settings, IngestSettings, CLIENT_ID, build)


def serve(ingest: Ingest) -> FastAPI:
    """The ASGI app over a bootstrapped ingest."""
    settings, producer, redis = ingest.settings, ingest.producer, ingest.redis

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await ingest.registry.start()
        tasks: list[asyncio.Task[None]] = []
        try:
            await producer.start()
        except Exception as exc:  # serve anyway: webhooks get 503 until Kafka is back, never a lost 2xx
            log.warning("kafka unreachable at start; connecting in the background", error=str(exc))
            tasks.append(asyncio.create_task(keep_connecting(producer), name="kafka-connect"))
        if settings.poller_enabled:
            tasks.append(asyncio.create_task(ingest.poller.run(), name="accessplanit-poller"))
        if ingest.erasure is not None:
            tasks.append(asyncio.create_task(follow_erasure(ingest.erasure), name="erasure-start"))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if ingest.erasure is not None:
                await ingest.erasure.stop()
            await ingest.locks.release_all()
            await producer.stop()
            await ingest.clients.close()
            await redis.aclose()
            await ingest.registry.stop()

    app = IngestApp(title="Tandem ingest", lifespan=lifespan)
    app.state.settings = settings
    app.state.registry = ingest.registry
    app.add_middleware(IngestMetricsMiddleware)
    app.router.routes.append(Route("/metrics", MetricsEndpoint()))

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/health/ready")
    async def ready() -> Response:
        kafka_ok = await producer.ping(timeout=3.0)
        try:
            redis_ok = bool(await asyncio.wait_for(redis.ping(), timeout=3.0))
        except Exception:
            redis_ok = False
        body = {"kafka": "ok" if kafka_ok else "unreachable", "redis": "ok" if redis_ok else "unreachable"}
        return JSONResponse(body, status_code=200 if kafka_ok and redis_ok else 503)

    webhooks = (ingest.accessplanit_webhook, ingest.mailchimp_webhook)
    for webhook in webhooks:
        app.include_router(webhook.router())
    app.add_hot_routes([route for webhook in webhooks for route in webhook.hot_routes()])
    return app
