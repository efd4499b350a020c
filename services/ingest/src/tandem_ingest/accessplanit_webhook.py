"""`/webhooks/accessplanit/{instance_id}/{secret}`: accessplanit user webhooks in, ChangeEvents out.

The URL's secret is the instance's `webhook_path_secret` (as Mailchimp's); a wrong one, an unknown instance and a
reference that cannot be resolved are answered alike (404), before anything is read or published. The URL without
a secret, `/webhooks/accessplanit/{instance_id}`, serves instances that have no path secret: signed ones (the
signature authenticates the sender) and, for existing set-ups, unsigned ones (which cost any sender a read of the
named user; `instance_validation` warns about them). There a missing or wrong signature, an oversized body and a
signing secret that cannot be resolved are answered as an unknown instance is (404, the reason logged), so the
URL tells no prober which instance ids exist.

A delivery is answered 202 once Kafka has the event (200 when an earlier delivery of the same change already
stored it) and 503 when it cannot be stored now, so accessplanit retries. Signed deliveries are believed; unsigned
ones (no secret configured: accessplanit's signing is an assumption) only say which user changed, and the record
is read from the API with the instance's own key, or, beyond the instance's re-read allowance (an import), left to
the catch-up poll (`catch_up`).
"""

from __future__ import annotations

import hmac
import json
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from tandem_ingest.accessplanit_changes import UserReader, delivery_event, own_write_marks
from tandem_ingest.catch_up import CatchUp, CatchUpUnavailable
from tandem_ingest.dedupe import Claim, ClaimsUnavailable
from tandem_ingest.domain.carriable import check_carriable
from tandem_ingest.domain.errors import InvalidPayload
from tandem_ingest.domain.normalize import accessplanit
from tandem_ingest.domain.signatures import verify
from tandem_ingest.hot_routes import HotRoute
from tandem_ingest.http import Refused, being_stored, problem, read_body
from tandem_ingest.intake import Intake
from tandem_ingest.publishing import KafkaUnavailable
from tandem_ingest.settings import IngestSettings
from tandem_shared.contracts import ChangeEvent, InstanceConfig, Stage, utcnow
from tandem_shared.instances import InstanceRegistry
from tandem_shared.logging import get_logger
from tandem_shared.secrets import SecretUnavailable, resolve_secret
from tandem_shared.tracing import new_id
from tandem_shared.vendors.accessplanit.client import AccessplanitError

log = get_logger("tandem.ingest")

SIGNATURE_HEADER = "X-Accessplanit-Signature"
PATH = "/webhooks/accessplanit/{instance_id}"
PATH_WITH_SECRET = "/webhooks/accessplanit/{instance_id}/{secret}"
METHODS = ("POST", "PUT", "PATCH", "DELETE")


def no_such_webhook() -> Response:
    """The answer to an unknown instance, a wrong path secret, and what the URL without one refuses: alike."""
    return problem(404, "Not Found", "no such webhook")


def _reason(exc: InvalidPayload | ValidationError) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        return f"{'.'.join(str(p) for p in first['loc']) or 'body'}: {first['msg']}"
    return str(exc)


class AccessplanitWebhook:
    """The handler, served both as a FastAPI route (`router`) and ahead of FastAPI (`hot_routes`)."""

    def __init__(
        self,
        settings: IngestSettings,
        registry: InstanceRegistry,
        intake: Intake,
        reader: UserReader,
        catch_up: CatchUp | None = None,
    ) -> None:
        """`catch_up` None: every unsigned delivery is read back on its own, however many arrive."""
        self._settings = settings
        self._registry = registry
        self._intake = intake
        self._reader = reader
        self._catch_up = catch_up

    def router(self) -> APIRouter:
        router = APIRouter()

        @router.api_route(PATH, methods=list(METHODS))
        async def deliver(instance_id: str, request: Request) -> Response:
            return await self.deliver(request, instance_id)

        @router.api_route(PATH_WITH_SECRET, methods=list(METHODS))
        async def deliver_with_secret(instance_id: str, secret: str, request: Request) -> Response:
            return await self.deliver(request, instance_id, secret)

        return router

    def hot_routes(self) -> list[HotRoute]:
        return [
            HotRoute(PATH, frozenset(METHODS), self.deliver),
            HotRoute(PATH_WITH_SECRET, frozenset(METHODS), self.deliver),
        ]

    def _instance(self, instance_id: str, given: str | None) -> InstanceConfig | None:
        """The instance the URL names and authorizes; None for anything else, all answered alike."""
        instance = self._registry.get(instance_id)
        if instance is None:
            return None
        ref = instance.accessplanit.webhook_path_secret
        if ref is None:
            return instance if given is None else None
        if given is None:
            return None
        try:
            expected = resolve_secret(ref)
        except SecretUnavailable as exc:
            log.error("accessplanit webhook path secret unavailable", instance_id=instance_id, error=str(exc))
            return None
        if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8")):
            log.warning("accessplanit webhook with a wrong path secret", instance_id=instance_id)
            return None
        return instance

    async def deliver(self, request: Request, instance_id: str, secret: str | None = None) -> Response:
        instance = self._instance(instance_id, secret)
        if instance is None:
            return no_such_webhook()
        try:
            try:
                raw = await self._body(request)
                trusted = self._authenticate(instance, request, raw)
            except Refused as refused:
                if secret is not None:
                    raise
                # The URL without a path secret names no secret: a body or signature refused there would tell
                # an instance that exists from one that does not. Answered like an unknown instance; the reason
                # is logged.
                log.warning(
                    "accessplanit webhook without a path secret refused",
                    instance_id=instance_id,
                    reason=refused.response.status_code,
                )
                return no_such_webhook()
            delivery = self._parse(request.method, raw)
            if not (trusted and delivery.record is not None):
                deferred = await self._defer(instance, delivery)
                if deferred is not None:
                    return deferred
            event = await self._event(instance, delivery, trusted=trusted)
            return await self._submit(event, instance, trusted=trusted)
        except Refused as refused:
            return refused.response

    async def _defer(self, instance: InstanceConfig, delivery: accessplanit.WebhookDelivery) -> Response | None:
        """202 when the delivery is left to the catch-up poll (over the instance's re-read allowance)."""
        if self._catch_up is None:
            return None
        try:
            execution_id = await self._catch_up.defers(instance, delivery.user_id)
        except CatchUpUnavailable as exc:
            log.warning("redis unavailable, asking the sender to retry", error=str(exc))
            return problem(503, "Service Unavailable", "the delivery could not be stored; retry later")
        if execution_id is None:
            return None
        return JSONResponse(
            {
                "execution_id": execution_id,
                "deferred": True,
                "detail": "accepted; the user will be read by the catch-up poll",
            },
            status_code=202,
        )

    async def _body(self, request: Request) -> bytes:
        limit = self._settings.max_body_bytes
        try:
            return await read_body(request, limit)
        except OverflowError:
            raise Refused(problem(413, "Payload Too Large", f"bodies are limited to {limit} bytes")) from None

    def _authenticate(self, instance: InstanceConfig, request: Request, raw: bytes) -> bool:
        """True for a verified signature, False when the instance has no secret; anything else is refused."""
        secret_ref = instance.accessplanit.webhook_secret
        if secret_ref is None:
            return False
        try:
            secret = resolve_secret(secret_ref)
        except SecretUnavailable:
            log.error("webhook secret unavailable", instance_id=instance.id)
            raise Refused(
                problem(503, "Service Unavailable", "the instance's webhook secret is not configured")
            ) from None
        header = request.headers.get(SIGNATURE_HEADER)
        if not verify(secret, raw, header, now=time.time(), tolerance_s=self._settings.signature_tolerance_s):
            raise Refused(problem(401, "Unauthorized", f"missing or invalid {SIGNATURE_HEADER}"))
        return True

    def _parse(self, method: str, raw: bytes) -> accessplanit.WebhookDelivery:
        try:
            body: Any = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise Refused(problem(400, "Bad Request", "body is not valid JSON")) from None
        except RecursionError:
            raise Refused(problem(400, "Bad Request", "body is nested too deeply")) from None
        try:
            check_carriable(body)
            return accessplanit.parse_webhook(method=method, body=body)
        except (InvalidPayload, ValidationError) as exc:
            raise Refused(problem(400, "Bad Request", _reason(exc))) from None

    async def _event(
        self, instance: InstanceConfig, delivery: accessplanit.WebhookDelivery, *, trusted: bool
    ) -> ChangeEvent:
        try:
            return await delivery_event(
                delivery, instance, self._reader, trusted=trusted, execution_id=new_id(), received_at=utcnow()
            )
        except (InvalidPayload, ValidationError) as exc:
            raise Refused(problem(400, "Bad Request", _reason(exc))) from None
        except AccessplanitError as exc:
            log.warning("user not read from accessplanit", instance_id=instance.id, error=exc.error.message)
            detail = f"the user could not be read from accessplanit: {exc}"
            raise Refused(problem(503, "Service Unavailable", detail)) from None

    async def _submit(self, event: ChangeEvent, instance: InstanceConfig, *, trusted: bool) -> Response:
        notes, headers = own_write_marks(event, instance)
        if not trusted:
            notes.append("Unsigned delivery: the user's record was read from accessplanit with the instance's key")
        try:
            state = await self._intake.submit(event, stage=Stage.INGEST, notes=notes, headers=headers)
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
            return being_stored()
        return JSONResponse(ids, status_code=202)
