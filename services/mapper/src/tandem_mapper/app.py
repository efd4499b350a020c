"""Mapper: ChangeEvents from `tandem.changes` → SyncCommands on `tandem.commands`, with a trace of each decision."""

from __future__ import annotations

from faststream import AckPolicy
from faststream.asgi import AsgiFastStream, AsgiResponse, get, make_ping_asgi
from faststream.kafka import KafkaBroker

from tandem_mapper.domain import decide
from tandem_mapper.settings import MapperSettings
from tandem_shared.contracts import ChangeEvent, Headers, Stage, TraceStatus, message_key, utcnow
from tandem_shared.contracts.topics import CHANGES, COMMANDS
from tandem_shared.instance_store import TopicInstanceRegistry
from tandem_shared.instances import InstanceRegistry
from tandem_shared.kafka import make_broker
from tandem_shared.logging import configure_logging
from tandem_shared.metrics import MAPPER_DECISIONS, MetricsEndpoint
from tandem_shared.tracing import StepRecorder, new_id, publish_trace


def register(broker: KafkaBroker, settings: MapperSettings, registry: InstanceRegistry) -> None:
    # Offsets are committed after the handler; an infrastructure failure (Kafka, Redis) seeks back and retries.
    @broker.subscriber(
        CHANGES,
        group_id=settings.group_id,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        max_workers=settings.workers,
    )
    async def on_change(event: ChangeEvent) -> None:
        step = StepRecorder(
            stage=Stage.MAPPER,
            execution_id=event.execution_id,
            original_execution_id=event.original_execution_id,
            instance_id=event.instance_id,
            flow=event.flow,
            trigger=event.trigger,
            contact_email=event.identity.email,
            accessplanit_user_id=event.identity.accessplanit_user_id,
        )
        instance = registry.get(event.instance_id)
        if instance is None:
            await publish_trace(broker, step.finish(TraceStatus.SKIPPED, f"Unknown instance {event.instance_id}"))
            return
        decision = decide(event, instance, command_id=new_id(), now=utcnow())
        MAPPER_DECISIONS.labels(flow=event.flow.value, status=decision.status.value).inc()
        for line in decision.logs:
            step.log("info", line)
        command = decision.command
        if command is not None:
            await broker.publish(
                command,
                topic=COMMANDS,
                key=message_key(command.instance_id, command.identity.contact_key).encode(),
                headers={
                    Headers.INSTANCE_ID: command.instance_id,
                    Headers.EXECUTION_ID: command.execution_id,
                    Headers.IDEMPOTENCY_KEY: command.idempotency_key,
                },
            )
        record = step.finish(
            decision.status,
            decision.summary,
            data_in=event.fields,
            data_out=command.payload if command else None,
            error=decision.error,
            changes_detected=decision.changes_detected,
        )
        await publish_trace(broker, record)


@get
async def live(_: object) -> AsgiResponse:
    return AsgiResponse(b"", status_code=204)


def create_app(settings: MapperSettings | None = None, registry: InstanceRegistry | None = None) -> AsgiFastStream:
    settings = settings or MapperSettings()
    configure_logging("mapper", settings.log_level, settings.log_json)
    broker = make_broker(settings.kafka_bootstrap_servers, client_id="tandem-mapper")
    registry = registry or TopicInstanceRegistry(settings.kafka_bootstrap_servers)
    register(broker, settings, registry)
    return AsgiFastStream(
        broker,
        asgi_routes=[
            ("/health/live", live),
            ("/health/ready", make_ping_asgi(broker, timeout=5.0)),
            ("/metrics", MetricsEndpoint()),
        ],
        on_startup=[registry.start],
        on_shutdown=[registry.stop],
    )
