"""The mapper as a process: batches from `tandem.changes` through FastStream's subscriber, health and metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiokafka import ConsumerRecord
from faststream import AckPolicy
from faststream.asgi import AsgiFastStream, AsgiResponse, get, make_ping_asgi
from faststream.kafka import KafkaBroker
from faststream.message import StreamMessage
from pydantic import ValidationError

from tandem_mapper.bootstrap import CLIENT_ID, bootstrap
from tandem_mapper.service import Mapper
from tandem_mapper.settings import MapperSettings
from tandem_shared.contracts import ChangeEvent
from tandem_shared.contracts.topics import CHANGES
from tandem_shared.instances import InstanceRegistry
from tandem_shared.kafka.gate import KafkaGate, service_app
from tandem_shared.logging import get_logger
from tandem_shared.metrics import MetricsEndpoint

log = get_logger("tandem.mapper")


def subscribe(broker: KafkaBroker, settings: MapperSettings, mapper: Mapper) -> None:
    # One consumer takes batches from all its partitions; the offsets are committed after the handler (all of the
    # batch durable). An infrastructure failure (Kafka, Redis) seeks every partition back to its first record of
    # the batch, and the batch is decided again after a pause.
    @broker.subscriber(
        CHANGES,
        group_id=settings.group_id,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        batch=True,
        max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
        decoder=_consumer_records,
    )
    async def on_changes(records: Any) -> None:
        try:
            await decide_batch(mapper, _readable(records))
        except Exception:
            await asyncio.sleep(settings.failure_pause_s)
            raise


# Raised by a record's data, not by Kafka or Redis (their clients raise KafkaError, RedisError, OSError): deciding
# the batch again would fail again, for ever, and every partition of this consumer would stop behind it.
DATA_ERRORS: tuple[type[Exception], ...] = (ValueError, TypeError, ArithmeticError)


async def decide_batch(mapper: Mapper, events: Sequence[ChangeEvent]) -> None:
    """The batch at once; when that fails on a change's own data, change by change (in order), skipping the ones
    that fail so, each with a log line naming it. Any other failure propagates: the batch is decided again."""
    try:
        await mapper.on_changes(events)
    except DATA_ERRORS as exc:
        if len(events) > 1:
            for event in events:
                await decide_batch(mapper, [event])
            return
        [event] = events
        log.error(
            "change skipped: deciding it fails on its own data",
            instance_id=event.instance_id,
            event_id=event.event_id,
            execution_id=event.execution_id,
            error=type(exc).__name__,
        )


async def _consumer_records(message: StreamMessage[Any]) -> Any:
    """The batch's records as aiokafka gave them: each is parsed once, by the contract (`_readable`)."""
    return message.raw_message


def _readable(records: Sequence[ConsumerRecord[bytes, bytes]]) -> list[ChangeEvent]:
    events = []
    for record in records:
        try:
            events.append(ChangeEvent.model_validate_json(record.value or b""))
        except ValidationError as exc:
            # Ingest publishes only valid ChangeEvents: this record came from elsewhere. Retrying it would stop every
            # partition of this consumer for good; it stays on the topic, where the log line points to it.
            log.error(
                "unreadable change skipped",
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                errors=exc.error_count(),
            )
    return events


@get
async def live(_: object) -> AsgiResponse:
    return AsgiResponse(b"", status_code=204)


def create_app(
    settings: MapperSettings | None = None, registry: InstanceRegistry | None = None
) -> AsgiFastStream | KafkaGate:
    """The mapper's app (`service_app`)."""
    return service_app("mapper", settings, MapperSettings, CLIENT_ID, lambda loaded: app(loaded, registry))


def app(settings: MapperSettings, registry: InstanceRegistry | None = None) -> AsgiFastStream:
    built = bootstrap(settings, registry=registry)
    subscribe(built.broker, settings, built.mapper)
    return AsgiFastStream(
        built.broker,
        asgi_routes=[
            ("/health/live", live),
            ("/health/ready", make_ping_asgi(built.broker, timeout=5.0)),
            ("/metrics", MetricsEndpoint()),
        ],
        # The producer is up before the subscriber takes its first batch and goes only after the last one.
        on_startup=[built.registry.start, built.producer.start],
        after_startup=[built.mapper.start, built.erasure.start],
        on_shutdown=[built.erasure.stop, built.mapper.stop],
        after_shutdown=[built.producer.stop, built.registry.stop, built.state.close],
    )
