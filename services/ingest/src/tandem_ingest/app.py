"""Ingest: vendor webhooks in, ChangeEvents on `tandem.changes` out. A 2xx means Kafka has the event."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from tandem_ingest.errors import InvalidPayload
from tandem_ingest.http import problem, read_body
from tandem_ingest.mailchimp_webhook import EventPublisher, mailchimp_router
from tandem_ingest.normalize import accessplanit
from tandem_ingest.publishing import ChangePublisher, KafkaUnavailable
from tandem_ingest.settings import IngestSettings
from tandem_ingest.signatures import verify
from tandem_shared.contracts import utcnow
from tandem_shared.instance_store import TopicInstanceRegistry
from tandem_shared.instances import InstanceRegistry
from tandem_shared.kafka import make_broker
from tandem_shared.logging import configure_logging, get_logger
from tandem_shared.secrets import SecretUnavailable, resolve_secret
from tandem_shared.tracing import new_id

log = get_logger("tandem.ingest")

SIGNATURE_HEADER = "X-Accessplanit-Signature"


def create_app(
    settings: IngestSettings | None = None,
    registry: InstanceRegistry | None = None,
    publisher: EventPublisher | None = None,
) -> FastAPI:
    settings = settings or IngestSettings()
    configure_logging("ingest", settings.log_level, settings.log_json)
    registry = registry or TopicInstanceRegistry(settings.kafka_bootstrap_servers)
    broker = make_broker(settings.kafka_bootstrap_servers, client_id="tandem-ingest")
    publisher = publisher or ChangePublisher(broker, settings.publish_timeout_s)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await registry.start()
        await broker.start()
        try:
            yield
        finally:
            await broker.stop()
            await registry.stop()

    app = FastAPI(title="Tandem ingest", lifespan=lifespan)
    app.state.settings = settings
    app.state.registry = registry

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/health/ready")
    async def ready() -> Response:
        ok = await broker.ping(timeout=3.0)
        return JSONResponse({"kafka": "ok" if ok else "unreachable"}, status_code=200 if ok else 503)

    @app.api_route("/webhooks/accessplanit/{instance_id}", methods=["POST", "PUT", "PATCH", "DELETE"])
    async def accessplanit_webhook(instance_id: str, request: Request) -> Response:
        instance = registry.get(instance_id)
        if instance is None:
            return problem(404, "Not Found", "no such instance")
        try:
            raw = await read_body(request, settings.max_body_bytes)
        except OverflowError:
            return problem(413, "Payload Too Large", f"bodies are limited to {settings.max_body_bytes} bytes")
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
        try:
            body: Any = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return problem(400, "Bad Request", "body is not valid JSON")
        try:
            event = accessplanit.normalize_webhook(
                instance_id=instance_id,
                method=request.method,
                body=body,
                execution_id=new_id(),
                received_at=utcnow(),
            )
        except InvalidPayload as exc:
            return problem(400, "Bad Request", str(exc))
        try:
            await publisher.publish(event)
        except KafkaUnavailable as exc:
            log.warning("kafka unavailable, asking the sender to retry", error=str(exc))
            return problem(503, "Service Unavailable", "the event could not be stored; retry later")
        return JSONResponse({"event_id": event.event_id, "execution_id": event.execution_id}, status_code=202)

    app.include_router(mailchimp_router(settings, registry, publisher))
    return app
