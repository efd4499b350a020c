"""Ingest: vendor webhooks in, ChangeEvents on `tandem.changes` out. A 2xx means Kafka has the event."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from faststream.kafka import KafkaBroker
from pydantic import ValidationError
from starlette.routing import Route

from tandem_ingest.accessplanit_changes import ApiUserReader, UserReader, delivery_event, own_write_marks
from tandem_ingest.dedupe import Claim, ClaimsUnavailable, EventClaims, RedisEventClaims
from tandem_ingest.errors import InvalidPayload
from tandem_ingest.hot_routes import HotRoute, IngestApp
from tandem_ingest.http import problem, read_body
from tandem_ingest.intake import DedupedSink, EventPublisher, Intake
from tandem_ingest.mailchimp_webhook import MailchimpWebhook
from tandem_ingest.normalize import accessplanit
from tandem_ingest.poller import AccessplanitPoller, PollerConfig, PollerLocks, RedisCursorStore
from tandem_ingest.publishing import ChangePublisher, KafkaUnavailable
from tandem_ingest.settings import IngestSettings
from tandem_ingest.signatures import verify
from tandem_shared.contracts import Stage, TraceRecord, utcnow
from tandem_shared.instance_store import TopicInstanceRegistry
from tandem_shared.instances import InstanceRegistry
from tandem_shared.kafka import make_broker
from tandem_shared.logging import configure_logging, get_logger
from tandem_shared.metrics import IngestMetricsMiddleware, MetricsEndpoint
from tandem_shared.redis.client import connect
from tandem_shared.secrets import SecretUnavailable, resolve_secret
from tandem_shared.tracing import new_id, publish_trace
from tandem_shared.vendors.accessplanit.client import AccessplanitClients, AccessplanitError
from tandem_shared.vendors.accessplanit.settings import AccessplanitSettings

log = get_logger("tandem.ingest")

SIGNATURE_HEADER = "X-Accessplanit-Signature"
ACCESSPLANIT_PATH = "/webhooks/accessplanit/{instance_id}"
ACCESSPLANIT_METHODS = ("POST", "PUT", "PATCH", "DELETE")


async def keep_connecting(broker: KafkaBroker) -> None:
    """Until Kafka answers: meanwhile webhooks get 503 (the sender retries) and the poller's rounds stop early."""
    delay = 1.0
    while True:
        await asyncio.sleep(delay)
        try:
            await broker.start()
        except Exception as exc:
            log.warning("kafka still unreachable", error=str(exc) or type(exc).__name__)
            with contextlib.suppress(Exception):
                await broker.stop()
            delay = min(delay * 2, 30.0)
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
    registry = registry or TopicInstanceRegistry(settings.kafka_bootstrap_servers)
    broker = make_broker(settings.kafka_bootstrap_servers, client_id="tandem-ingest")
    redis = connect(settings)  # ingest's one Redis client: claims, poller cursors and leases, request budget
    clients = AccessplanitClients(redis, AccessplanitSettings())
    publisher = publisher or ChangePublisher(broker, settings.publish_timeout_s)
    claims = claims or RedisEventClaims(
        redis, pending_ttl_s=settings.dedupe_pending_ttl_s, done_ttl_s=settings.dedupe_done_ttl_s
    )
    reader = reader or ApiUserReader(clients)
    intake = Intake(publisher, claims)

    async def trace(record: TraceRecord) -> None:
        await publish_trace(broker, record)

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
            await broker.start()
        except Exception as exc:  # serve anyway: webhooks get 503 until Kafka is back, never a lost 2xx
            log.warning("kafka unreachable at start; connecting in the background", error=str(exc))
            with contextlib.suppress(Exception):
                await broker.stop()
            tasks.append(asyncio.create_task(keep_connecting(broker), name="kafka-connect"))
        if settings.poller_enabled:
            tasks.append(asyncio.create_task(poller.run(), name="accessplanit-poller"))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await locks.release_all()
            await broker.stop()
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
        kafka_ok = await broker.ping(timeout=3.0)
        try:
            redis_ok = bool(await asyncio.wait_for(redis.ping(), timeout=3.0))
        except Exception:
            redis_ok = False
        body = {"kafka": "ok" if kafka_ok else "unreachable", "redis": "ok" if redis_ok else "unreachable"}
        return JSONResponse(body, status_code=200 if kafka_ok and redis_ok else 503)

    async def accessplanit_webhook(request: Request, instance_id: str) -> Response:
        instance = registry.get(instance_id)
        if instance is None:
            return problem(404, "Not Found", "no such instance")
        try:
            raw = await read_body(request, settings.max_body_bytes)
        except OverflowError:
            return problem(413, "Payload Too Large", f"bodies are limited to {settings.max_body_bytes} bytes")
        # Signed deliveries are believed; unsigned ones (no secret configured: accessplanit's signing is an
        # assumption) only say which user changed, and the record is read from the API with the instance's key.
        trusted = False
        secret_ref = instance.accessplanit.webhook_secret
        if secret_ref is not None:
            try:
                secret = resolve_secret(secret_ref)
            except SecretUnavailable:
                log.error("webhook secret unavailable", instance_id=instance_id)
                return problem(503, "Service Unavailable", "the instance's webhook secret is not configured")
            if not verify(
                secret,
                raw,
                request.headers.get(SIGNATURE_HEADER),
                now=time.time(),
                tolerance_s=settings.signature_tolerance_s,
            ):
                return problem(401, "Unauthorized", f"missing or invalid {SIGNATURE_HEADER}")
            trusted = True
        try:
            body: Any = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return problem(400, "Bad Request", "body is not valid JSON")
        except RecursionError:
            return problem(400, "Bad Request", "body is nested too deeply")
        try:
            delivery = accessplanit.parse_webhook(method=request.method, body=body)
            event = await delivery_event(
                delivery, instance, reader, trusted=trusted, execution_id=new_id(), received_at=utcnow()
            )
        except (InvalidPayload, ValidationError) as exc:
            return problem(400, "Bad Request", _reason(exc))
        except AccessplanitError as exc:
            log.warning("user not read from accessplanit", instance_id=instance_id, error=exc.error.message)
            return problem(503, "Service Unavailable", f"the user could not be read from accessplanit: {exc}")
        notes, headers = own_write_marks(event, instance)
        if not trusted:
            notes.append("Unsigned delivery: the user's record was read from accessplanit with the instance's key")
        try:
            state = await intake.submit(event, stage=Stage.INGEST, notes=notes, headers=headers)
        except KafkaUnavailable as exc:
            log.warning("kafka unavailable, asking the sender to retry", error=str(exc))
            return problem(503, "Service Unavailable", "the event could not be stored; retry later")
        except ClaimsUnavailable as exc:
            log.warning("redis unavailable, asking the sender to retry", error=str(exc))
            return problem(503, "Service Unavailable", "the event could not be checked for duplicates; retry later")
        ids = {"event_id": event.event_id, "execution_id": event.execution_id}
        if state is Claim.DONE:
            return JSONResponse({**ids, "duplicate": True}, status_code=200)
        if state is Claim.IN_FLIGHT:
            return problem(409, "Conflict", "the same change is being stored right now; retry shortly")
        return JSONResponse(ids, status_code=202)

    @app.api_route(ACCESSPLANIT_PATH, methods=list(ACCESSPLANIT_METHODS))
    async def accessplanit_route(instance_id: str, request: Request) -> Response:
        return await accessplanit_webhook(request, instance_id)

    mailchimp = MailchimpWebhook(settings, registry, DedupedSink(intake))
    app.include_router(mailchimp.router())
    accessplanit_hot = HotRoute(ACCESSPLANIT_PATH, frozenset(ACCESSPLANIT_METHODS), accessplanit_webhook)
    app.add_hot_routes([accessplanit_hot, *mailchimp.hot_routes()])
    return app


def _reason(exc: InvalidPayload | ValidationError) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        return f"{'.'.join(str(p) for p in first['loc']) or 'body'}: {first['msg']}"
    return str(exc)
