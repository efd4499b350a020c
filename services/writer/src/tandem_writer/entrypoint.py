"""Writer: SyncCommands from `tandem.commands` (and its retry tiers) applied to their target exactly once in effect.

The ASGI app (`uvicorn tandem_writer.entrypoint:create_app --factory`): health, metrics and the lifecycle of the
writer composed by `tandem_writer.bootstrap`. The delivery service (`delivery.py`) decides what happens to each
command and traces it; the shared partitioned consumer feeds it partition by partition (`strategy.py`) and commits
only what is durably done. FastStream's broker serves the health routes.
"""

from __future__ import annotations

from faststream.asgi import AsgiFastStream, AsgiResponse, get
from faststream.asgi.handlers import GetHandler
from faststream.kafka import KafkaBroker

from tandem_shared.contracts import System
from tandem_shared.instances import InstanceRegistry
from tandem_shared.kafka.gate import KafkaGate, service_app
from tandem_shared.kafka.partitioned import PartitionedConsumer
from tandem_shared.metrics import MetricsEndpoint
from tandem_writer.bootstrap import CLIENT_ID, bootstrap
from tandem_writer.settings import WriterSettings
from tandem_writer.targets.base import Target


@get
async def live(_: object) -> AsgiResponse:
    return AsgiResponse(b"", status_code=204)


def readiness(broker: KafkaBroker, consumer: PartitionedConsumer) -> GetHandler:
    @get
    async def ready(_: object) -> AsgiResponse:
        ok = consumer.running and await broker.ping(timeout=5.0)
        return AsgiResponse(b"", status_code=204 if ok else 503)

    return ready


def create_app(
    settings: WriterSettings | None = None,
    registry: InstanceRegistry | None = None,
    targets: dict[System, Target] | None = None,
) -> AsgiFastStream | KafkaGate:
    """The writer's app (`service_app`)."""
    return service_app("writer", settings, WriterSettings, CLIENT_ID, lambda loaded: app(loaded, registry, targets))


def app(
    settings: WriterSettings,
    registry: InstanceRegistry | None = None,
    targets: dict[System, Target] | None = None,
) -> AsgiFastStream:
    writer = bootstrap(settings, registry=registry, targets=targets)
    broker = writer.kafka.broker()
    return AsgiFastStream(
        broker,
        asgi_routes=[
            ("/health/live", live),
            ("/health/ready", readiness(broker, writer.consumer)),
            ("/metrics", MetricsEndpoint()),
        ],
        on_startup=[writer.connect],
        # The consumer starts once the producer is connected (and `stop` stops it first).
        after_startup=[writer.consume],
        on_shutdown=[writer.stop],
    )
