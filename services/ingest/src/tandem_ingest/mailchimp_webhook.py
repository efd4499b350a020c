"""`/webhooks/mailchimp/{instance_id}/{secret}`: Mailchimp audience webhooks in, ChangeEvents out.

Mailchimp checks a new webhook URL with a GET and may POST an empty body; both get 200. A delivery is answered 200
only once Kafka has the event, and 503 when it does not, so Mailchimp retries (for about 75 minutes). The URL's
secret is the instance's `webhook_secret`; a wrong one is answered like an unknown instance (404). When the instance
has a `webhook_signing_secret`, the `X-Mailchimp-Signature` header must also verify.
"""

from __future__ import annotations

import hmac
import time
from typing import Protocol

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from tandem_ingest.domain.errors import InvalidPayload
from tandem_ingest.domain.normalize.mailchimp import Ignored, normalize_webhook, parse_form
from tandem_ingest.domain.signatures import verify
from tandem_ingest.hot_routes import HotRoute
from tandem_ingest.http import Refused, being_stored, problem, read_body
from tandem_ingest.intake import BeingStored
from tandem_ingest.publishing import KafkaUnavailable
from tandem_ingest.settings import IngestSettings
from tandem_shared.contracts import ChangeEvent, InstanceConfig, utcnow
from tandem_shared.instances import InstanceRegistry
from tandem_shared.logging import get_logger
from tandem_shared.secrets import SecretUnavailable, resolve_secret
from tandem_shared.tracing import new_id

log = get_logger("tandem.ingest.mailchimp")

SIGNATURE_HEADER = "X-Mailchimp-Signature"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
PATH = "/webhooks/mailchimp/{instance_id}/{secret}"


class ChangeSink(Protocol):
    async def publish(self, event: ChangeEvent) -> None:
        """Returns once the change is stored; raises KafkaUnavailable, or BeingStored while another delivery of
        the same change is storing it."""
        ...


def _not_found() -> JSONResponse:
    return problem(404, "Not Found", "no such webhook")


def _secret(ref: str, what: str, instance_id: str) -> str:
    try:
        return resolve_secret(ref)
    except SecretUnavailable as exc:
        log.error(f"Mailchimp {what} unavailable", instance_id=instance_id, error=str(exc))
        raise Refused(problem(503, "Service Unavailable", f"the instance's {what} is not configured")) from exc


def _authorize(registry: InstanceRegistry, instance_id: str, given: str) -> InstanceConfig:
    """The instance whose path secret matches, compared in constant time; anything else looks like a 404."""
    instance = registry.get(instance_id)
    if instance is None or instance.mailchimp.webhook_secret is None:
        raise Refused(_not_found())
    try:
        expected = resolve_secret(instance.mailchimp.webhook_secret)
    except SecretUnavailable as exc:
        # A configuration error for the operator to fix, not a reason for Mailchimp to retry (a 503 would also tell
        # any sender that the instance exists): answered like any wrong secret.
        log.error("Mailchimp webhook secret unavailable", instance_id=instance_id, error=str(exc))
        raise Refused(_not_found()) from exc
    if not hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
        log.warning("Mailchimp webhook with a wrong path secret", instance_id=instance_id)
        raise Refused(_not_found())
    return instance


class MailchimpWebhook:
    """The handlers, served both as FastAPI routes (`router`) and ahead of FastAPI (`hot_routes`)."""

    def __init__(self, settings: IngestSettings, registry: InstanceRegistry, publisher: ChangeSink) -> None:
        self._settings = settings
        self._registry = registry
        self._publisher = publisher

    def router(self) -> APIRouter:
        router = APIRouter()

        @router.get(PATH)
        async def validate(instance_id: str, secret: str, request: Request) -> Response:
            return await self.validate(request, instance_id, secret)

        @router.post(PATH)
        async def deliver(instance_id: str, secret: str, request: Request) -> Response:
            return await self.deliver(request, instance_id, secret)

        return router

    def hot_routes(self) -> list[HotRoute]:
        return [
            HotRoute(PATH, frozenset({"GET"}), self.validate),
            HotRoute(PATH, frozenset({"POST"}), self.deliver),
        ]

    async def validate(self, _: Request, instance_id: str, secret: str) -> Response:
        try:
            _authorize(self._registry, instance_id, secret)
        except Refused as refused:
            return refused.response
        return JSONResponse({"status": "ok"})

    async def deliver(self, request: Request, instance_id: str, secret: str) -> Response:
        try:
            instance = _authorize(self._registry, instance_id, secret)
            return await self._deliver(instance, request)
        except Refused as refused:
            return refused.response

    async def _deliver(self, instance: InstanceConfig, request: Request) -> Response:
        settings = self._settings
        try:
            raw = await read_body(request, settings.max_body_bytes)
        except OverflowError:
            return problem(413, "Payload Too Large", f"bodies are limited to {settings.max_body_bytes} bytes")
        if not raw.strip():
            return JSONResponse({"status": "ok"})
        signing_ref = instance.mailchimp.webhook_signing_secret
        if signing_ref is not None:
            signing_secret = _secret(signing_ref, "webhook signing secret", instance.id)
            header = request.headers.get(SIGNATURE_HEADER)
            if not verify(signing_secret, raw, header, now=time.time(), tolerance_s=settings.signature_tolerance_s):
                log.warning("Mailchimp webhook with a missing or invalid signature", instance_id=instance.id)
                return problem(401, "Unauthorized", f"missing, expired or invalid {SIGNATURE_HEADER}")
        content_type = request.headers.get("content-type", FORM_CONTENT_TYPE).split(";")[0].strip().lower()
        if content_type != FORM_CONTENT_TYPE:
            return problem(415, "Unsupported Media Type", f"Mailchimp webhooks are {FORM_CONTENT_TYPE}")
        try:
            result = normalize_webhook(
                instance_id=instance.id,
                audience_id=instance.mailchimp.audience_id,
                form=parse_form(raw),
                execution_id=new_id(),
                received_at=utcnow(),
            )
        except (InvalidPayload, ValidationError) as exc:
            message = str(exc) if isinstance(exc, InvalidPayload) else "the delivery does not form a valid change"
            log.warning("Mailchimp webhook refused", instance_id=instance.id, reason=message)
            return problem(400, "Bad Request", message)
        if isinstance(result, Ignored):
            log.info("Mailchimp webhook ignored", instance_id=instance.id, type=result.event_type, reason=result.reason)
            return JSONResponse({"ignored": result.event_type, "reason": result.reason})
        try:
            await self._publisher.publish(result)
        except BeingStored:
            return being_stored()
        except KafkaUnavailable as exc:
            log.warning("kafka unavailable, asking Mailchimp to retry", error=str(exc))
            return problem(503, "Service Unavailable", "the event could not be stored; retry later")
        return JSONResponse({"event_id": result.event_id, "execution_id": result.execution_id})
