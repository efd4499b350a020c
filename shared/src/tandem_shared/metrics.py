"""Prometheus metrics every service exposes at `/metrics`.

All definitions live here so any stage can increment them without redefining (a metric name registered twice in
one process is an error). Labels stay low-cardinality: no execution, contact or instance ids.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

EVENTS_IN = Counter("tandem_events_in_total", "Messages a service consumed, by topic.", ["service", "topic"])
EVENTS_OUT = Counter("tandem_events_out_total", "Messages a service published, by topic.", ["service", "topic"])
ERRORS = Counter(
    "tandem_errors_total", "Errors a service handled without losing the message, by kind.", ["service", "kind"]
)
INGEST_ACCEPTED = Counter(
    "tandem_ingest_events_accepted_total", "Vendor deliveries stored on tandem.changes (2xx answered).", ["source"]
)
INGEST_REJECTED = Counter(
    "tandem_ingest_events_rejected_total",
    "Vendor deliveries refused, by HTTP status (4xx: bad input, 503: Kafka unavailable).",
    ["source", "status"],
)
MAPPER_DECISIONS = Counter(
    "tandem_mapper_decisions_total", "Mapper decisions, by flow and trace status.", ["flow", "status"]
)
WRITER_OUTCOMES = Counter(
    "tandem_writer_outcomes_total", "Write attempts, by target and trace status.", ["target", "status"]
)
RETRIES = Counter("tandem_retries_total", "Write attempts scheduled for a retry, by target.", ["target"])
DEAD_LETTERS = Counter("tandem_dead_letters_total", "Commands moved to the dead-letter topic, by target.", ["target"])
CONSUMER_LAG = Gauge(
    "tandem_consumer_lag", "Records between a consumer's position and the partition's end.", ["service", "topic"]
)
END_TO_END_LATENCY = Histogram(
    "tandem_end_to_end_latency_seconds",
    "From the start of an execution's first step to its successful write, derived from the trace.",
    ["flow"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0),
)
TRACE_RECORDS_STORED = Counter(
    "tandem_console_trace_records_stored_total", "Trace records the console added to its store (duplicates excluded)."
)

RECONCILE_RUNS = Counter("tandem_reconcile_runs_total", "Reconciliation runs that ended, by outcome.", ["status"])
RECONCILE_CONTACTS = Counter(
    "tandem_reconcile_contacts_total", "Contacts compared by reconciliation runs, by category.", ["category"]
)
RECONCILE_REPAIRS = Counter(
    "tandem_reconcile_repairs_total", "Repairs reconciliation runs published, by the side they write to.", ["target"]
)
RECONCILE_LAST_DRIFT = Gauge(
    "tandem_reconcile_last_drift",
    "Contacts not equal on both sides in the last run that finished, by category.",
    ["category"],
)


def render() -> tuple[bytes, str]:
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


class MetricsEndpoint:
    """`/metrics` as a plain ASGI app, mountable as a route in FastAPI and in FastStream's `asgi_routes`."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body, content_type = render()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


_WEBHOOK_PATH = re.compile(r"^/webhooks/([a-z]+)/")


class IngestMetricsMiddleware:
    """Counts webhook deliveries by the status ingest answered: 2xx accepted, anything else rejected."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _WEBHOOK_PATH.match(scope.get("path", "")) if scope["type"] == "http" else None
        if match is None:
            await self.app(scope, receive, send)
            return
        source = match.group(1)

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = int(message["status"])
                if 200 <= status < 300:
                    INGEST_ACCEPTED.labels(source=source).inc()
                else:
                    INGEST_REJECTED.labels(source=source, status=str(status)).inc()
            await send(message)

        await self.app(scope, receive, counting_send)
