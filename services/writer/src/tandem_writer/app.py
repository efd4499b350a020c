"""Writer: SyncCommands from `tandem.commands` applied to their target, with a trace of each attempt."""

from __future__ import annotations

from faststream import AckPolicy
from faststream.asgi import AsgiFastStream, AsgiResponse, get, make_ping_asgi
from faststream.kafka import KafkaBroker

from tandem_shared.contracts import Stage, SyncCommand, System, TraceStatus
from tandem_shared.contracts.topics import COMMANDS
from tandem_shared.instance_store import TopicInstanceRegistry
from tandem_shared.instances import InstanceRegistry
from tandem_shared.kafka import make_broker
from tandem_shared.logging import configure_logging
from tandem_shared.metrics import WRITER_OUTCOMES, MetricsEndpoint
from tandem_shared.sync_state import SyncStateStore
from tandem_shared.tracing import StepRecorder, publish_trace
from tandem_writer.settings import WriterSettings
from tandem_writer.targets.accessplanit import AccessplanitTarget
from tandem_writer.targets.base import Target
from tandem_writer.targets.mailchimp import MailchimpTarget


def register(
    broker: KafkaBroker,
    settings: WriterSettings,
    registry: InstanceRegistry,
    targets: dict[System, Target],
    state: SyncStateStore,
) -> None:
    # Commit only after the outcome is known and traced (never FastStream's ack-first default).
    @broker.subscriber(
        COMMANDS, group_id=settings.group_id, auto_offset_reset="earliest", ack_policy=AckPolicy.NACK_ON_ERROR
    )
    async def on_command(command: SyncCommand) -> None:
        step = StepRecorder(
            stage=Stage.WRITER,
            execution_id=command.execution_id,
            original_execution_id=command.original_execution_id,
            instance_id=command.instance_id,
            flow=command.flow,
            trigger=command.trigger,
            attempt=command.attempt,
            contact_email=command.identity.email,
            accessplanit_user_id=command.identity.accessplanit_user_id,
        )
        instance = registry.get(command.instance_id)
        if instance is None:
            await publish_trace(broker, step.finish(TraceStatus.SKIPPED, f"Unknown instance {command.instance_id}"))
            return
        target = targets.get(command.target)
        if target is None:
            await publish_trace(broker, step.finish(TraceStatus.SKIPPED, f"No writer for {command.target.label} yet"))
            return
        outcome = await target.write(command, instance)
        if outcome.ok:
            # What the target now holds: the mapper's change detection and echo suppression read it.
            await state.record_written(command)
        record = step.finish(
            TraceStatus.SUCCEEDED if outcome.ok else TraceStatus.FAILED,
            outcome.summary,
            data_in=command.payload,
            data_out=outcome.response,
            error=outcome.error,
            changes_detected=True,
        )
        WRITER_OUTCOMES.labels(target=command.target.value, status=record.status.value).inc()
        await publish_trace(broker, record)


@get
async def live(_: object) -> AsgiResponse:
    return AsgiResponse(b"", status_code=204)


def create_app(settings: WriterSettings | None = None, registry: InstanceRegistry | None = None) -> AsgiFastStream:
    settings = settings or WriterSettings()
    configure_logging("writer", settings.log_level, settings.log_json)
    broker = make_broker(settings.kafka_bootstrap_servers, client_id="tandem-writer")
    targets: dict[System, Target] = {
        System.MAILCHIMP: MailchimpTarget.from_settings(settings),
        System.ACCESSPLANIT: AccessplanitTarget.from_settings(settings),
    }
    registry = registry or TopicInstanceRegistry(settings.kafka_bootstrap_servers)
    state = SyncStateStore.from_url(settings.redis_url)
    register(broker, settings, registry, targets, state)

    async def close_targets() -> None:
        for target in targets.values():
            await target.close()

    app = AsgiFastStream(
        broker,
        asgi_routes=[
            ("/health/live", live),
            ("/health/ready", make_ping_asgi(broker, timeout=5.0)),
            ("/metrics", MetricsEndpoint()),
        ],
        on_startup=[registry.start],
        on_shutdown=[close_targets, registry.stop, state.close],
    )
    return app
