"""The naive direct sync: the obvious integration a team writes first, as the reference Tandem must beat.

A webhook handler that checks the signature, maps the user and PUTs the member to Mailchimp before it answers —
no Kafka, no limiter, no coalescing, no retries. It reuses Tandem's own signature check, normalization and
mapping so that the comparison prices the architecture, not different parsing code.

`uvicorn tandem_bench.naive:create_app --factory`; configured by the same TANDEM_DEMO_* variables as the stack.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from tandem_ingest.domain.errors import InvalidPayload
from tandem_ingest.domain.normalize.accessplanit import normalize_webhook
from tandem_ingest.domain.signatures import verify
from tandem_mapper.domain.mapping import build_payload, map_record, read_record
from tandem_shared.contracts import Flow, System, subscriber_hash, utcnow
from tandem_shared.instances import demo_instance
from tandem_shared.secrets import resolve_secret
from tandem_shared.tracing import new_id


def create_app() -> FastAPI:
    instance = demo_instance(signed_accessplanit_webhooks=True)
    webhook_secret = resolve_secret(instance.accessplanit.webhook_secret or "")
    api_key = resolve_secret(instance.mailchimp.api_key)
    client = httpx.AsyncClient(base_url=instance.mailchimp.api_base_url or "", auth=("naive", api_key), timeout=30.0)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await client.aclose()

    app = FastAPI(title="naive direct sync (benchmark reference)", lifespan=lifespan)

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @app.api_route("/webhooks/accessplanit/{instance_id}", methods=["POST", "PUT", "PATCH"])
    async def accessplanit_webhook(instance_id: str, request: Request) -> Response:
        raw = await request.body()
        if not verify(
            webhook_secret, raw, request.headers.get("X-Accessplanit-Signature"), now=time.time(), tolerance_s=300
        ):
            return Response(status_code=401)
        try:
            event = normalize_webhook(
                instance_id=instance_id,
                method=request.method,
                body=orjson.loads(raw),
                execution_id=new_id(),
                received_at=utcnow(),
            )
        except (InvalidPayload, ValueError):
            return Response(status_code=400)
        email = event.identity.email
        if not email:
            return Response(status_code=422)
        # The whole mapped record every time: a naive sync knows nothing about what Mailchimp already holds.
        record = read_record(instance, System.ACCESSPLANIT, event.fields)
        values, _ = map_record(instance, Flow.ACCESSPLANIT_TO_MAILCHIMP, record)
        member = build_payload(instance, System.MAILCHIMP, email, {v.target_field: v.value for v in values})
        path = f"/lists/{instance.mailchimp.audience_id}/members/{subscriber_hash(member['email_address'])}"
        try:
            answer = await client.put(path, json=member)
        except httpx.HTTPError:
            return Response(status_code=504)
        # The vendor sees the Mailchimp failure and may retry; a naive sync has nothing better to offer.
        return Response(status_code=200 if answer.is_success else 502)

    return app
