"""The reconciler role of the writer package: reconciliation runs in a process of their own.

`uvicorn tandem_writer.reconciler:create_app --factory`, with the writer's settings and vendor credentials
(`TANDEM_WRITER_*`, the accessplanit and Mailchimp secrets). It consumes `tandem.reconcile.requests` and executes
runs under each instance's lease exactly as a writer does (`reconcile_service`); the writers then run with
`TANDEM_WRITER_RECONCILE_RUNS=false`, so a backfill's reading, comparing and publishing never takes CPU from live
writes. Both roles share the vendors' budgets through Redis (Mailchimp's 10 connections, accessplanit's hourly
requests, with reconciliation at the lowest priority).
"""

from __future__ import annotations

from faststream.asgi import AsgiFastStream, AsgiResponse, get, make_ping_asgi

from tandem_shared.instances import InstanceRegistry
from tandem_shared.kafka.gate import KafkaGate, service_app
from tandem_shared.metrics import MetricsEndpoint
from tandem_writer.bootstrap import RECONCILER_CLIENT_ID, bootstrap_reconciler
from tandem_writer.settings import WriterSettings


@get
async def live(_: object) -> AsgiResponse:
    return AsgiResponse(b"", status_code=204)


def create_app(
    settings: WriterSettings | None = None, registry: InstanceRegistry | None = None
) -> AsgiFastStream | KafkaGate:
    """The reconciler's app (`service_app`)."""
    return service_app(
        "reconciler", settings, WriterSettings, RECONCILER_CLIENT_ID, lambda loaded: app(loaded, registry)
    )


def app(settings: WriterSettings, registry: InstanceRegistry | None = None) -> AsgiFastStream:
    reconciler = bootstrap_reconciler(settings, registry=registry)
    broker = reconciler.kafka.broker()
    return AsgiFastStream(
        broker,
        asgi_routes=[
            ("/health/live", live),
            ("/health/ready", make_ping_asgi(broker, timeout=5.0)),
            ("/metrics", MetricsEndpoint()),
        ],
        after_startup=[reconciler.start],
        on_shutdown=[reconciler.stop],
    )
