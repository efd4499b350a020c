"""Ingest: vendor webhooks in, ChangeEvents on `tandem.changes` out. A 2xx means Kafka has the event."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from starlette.routing import Route

from tandem_ingest.accessplanit_changes import ApiUserReader, UserReader
from tandem_ingest.accessplanit_webhook import AccessplanitWebhook
from tandem_ingest.dedupe import EventClaims, RedisEventClaims
from tandem_ingest.hot_routes import IngestApp
from tandem_ingest.intake import DedupedSink, EventPublisher, Intake
from tandem_ingest.mailchimp_webhook import MailchimpWebhook
from tandem_ingest.poller import AccessplanitPoller, PollerConfig, PollerLocks, RedisCursorStore
from tandem_ingest.publishing import ChangePublisher
from tandem_ingest.settings import IngestSettings
from tandem_shared.concurrency import Backoff
from tandem_shared.contracts import TraceRecord
from tandem_shared.instance_store import TopicInstanceRegistry
from tandem_shared.instances import InstanceRegistry
from tandem_shared.kafka import KafkaConnection, KafkaProducer
from tandem_shared.logging import configure_logging, get_logger
from tandem_shared.metrics import IngestMetricsMiddleware, MetricsEndpoint
from tandem_shared.redis.client import connect
from tandem_shared.tracing import publish_trace
from tandem_shared.vendors.accessplanit.client import AccessplanitClients
from tandem_shared.vendors.accessplanit.settings import AccessplanitSettings

log = get_logger("tandem.ingest")


async def keep_connecting(producer: KafkaProducer) -> None:
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


def create_app(
    settings: IngestSettings | None = None,
    registry: InstanceRegistry | None = None,
    *,
    publisher: EventPublisher | None = None,
    claims: EventClaims | None = None,
    reader: UserReader | None = None,
) -> FastAPI:
    """The ingest app. `publisher`, `claims` and `reader` replace Kafka, Redis and the accessplanit API in tests."""
    settings = settings or IngestSettings()
    configure_logging("ingest", settings.log_level, settings.log_json)
    kafka = KafkaConnection.from_settings(settings, "tandem-ingest")
    registry = registry or TopicInstanceRegistry(kafka)
    producer = KafkaProducer(kafka)
    redis = connect(settings)  # ingest's one Redis client: claims, poller cursors and leases, request budget
    clients = AccessplanitClients(redis, AccessplanitSettings())
    publisher = publisher or ChangePublisher(producer, settings.publish_timeout_s)
    claims = claims or RedisEventClaims(
        redis, pending_ttl_s=settings.dedupe_pending_ttl_s, done_ttl_s=settings.dedupe_done_ttl_s
    )
    reader = reader or ApiUserReader(clients)
    intake = Intake(publisher, claims)

    async def trace(record: TraceRecord) -> None:
        await publish_trace(producer, record)

    locks = PollerLocks(redis, ttl_s=max(3 * settings.poll_interval_s, 30.0))
    poller = AccessplanitPoller(
        registry=registry,
        clients=clients,
        intake=intake,
        cursors=RedisCursorStore(redis),
        locks=locks,
        trace=trace,
        config=PollerConfig(
            interval_s=settings.poll_interval_s,
            page_size=settings.poll_page_size,
            max_pages=settings.poll_max_pages,
            overlap_s=settings.poll_overlap_s,
        ),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await registry.start()
        tasks: list[asyncio.Task[None]] = []
        try:
            await producer.start()
        except Exception as exc:  # serve anyway: webhooks get 503 until Kafka is back, never a lost 2xx
            log.warning("kafka unreachable at start; connecting in the background", error=str(exc))
            tasks.append(asyncio.create_task(keep_connecting(producer), name="kafka-connect"))
        if settings.poller_enabled:
            tasks.append(asyncio.create_task(poller.run(), name="accessplanit-poller"))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await locks.release_all()
            await producer.stop()
            await clients.close()
            await redis.aclose()
            await registry.stop()

    app = IngestApp(title="Tandem ingest", lifespan=lifespan)
    app.state.settings = settings
    app.state.registry = registry
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

    accessplanit_webhook = AccessplanitWebhook(settings, registry, intake, reader)
    app.include_router(accessplanit_webhook.router())
    mailchimp = MailchimpWebhook(settings, registry, DedupedSink(intake))
    app.include_router(mailchimp.router())
    app.add_hot_routes([*accessplanit_webhook.hot_routes(), *mailchimp.hot_routes()])
    return app
