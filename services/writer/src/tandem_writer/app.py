"""Writer: SyncCommands from `tandem.commands` (and its retry tiers) applied to their target exactly once in effect.

The delivery layer (`delivery.py`) decides what happens to each command and traces it; the shared partitioned
consumer feeds it partition by partition (`strategy.py`) and commits only what is durably done. The shared Kafka
producer sends the trace records and the retry and dead-letter forwards (acks=all); FastStream's broker serves the
health routes.
"""

from __future__ import annotations

from faststream.asgi import AsgiFastStream, AsgiResponse, get
from faststream.asgi.handlers import GetHandler
from faststream.kafka import KafkaBroker

from tandem_shared.contracts import System
from tandem_shared.contracts.topics import COMMANDS, COMMANDS_RETRY
from tandem_shared.instance_store import TopicInstanceRegistry
from tandem_shared.instances import InstanceRegistry
from tandem_shared.kafka import KafkaConnection, KafkaProducer, Producer
from tandem_shared.kafka.partitioned import PartitionedConsumer, consumer_options
from tandem_shared.logging import configure_logging
from tandem_shared.metrics import MetricsEndpoint
from tandem_shared.redis.client import connect
from tandem_shared.redis.idempotency import RedisIdempotencyStore
from tandem_shared.redis.state import RedisStateStore
from tandem_shared.vendors.accessplanit.settings import AccessplanitSettings
from tandem_writer.delivery import Delivery
from tandem_writer.retry import RetryPolicy
from tandem_writer.settings import WriterSettings
from tandem_writer.strategy import delivery_strategy
from tandem_writer.targets.accessplanit import AccessplanitTarget
from tandem_writer.targets.base import Target
from tandem_writer.targets.mailchimp import MailchimpTarget


class ProducerSink:
    """Forwards records through the idempotent acks=all producer; returns once the broker has them."""

    def __init__(self, producer: Producer) -> None:
        self._producer = producer

    async def send(
        self, topic: str, value: bytes, *, key: bytes | None, partition: int, headers: dict[str, str]
    ) -> None:
        await (await self._producer.send(topic, value, key=key, headers=headers, partition=partition))


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
) -> AsgiFastStream:
    settings = settings or WriterSettings()
    configure_logging("writer", settings.log_level, settings.log_json)
    kafka = KafkaConnection.from_settings(settings, "tandem-writer")
    broker = kafka.broker()
    producer = KafkaProducer(kafka)
    # The writer's one Redis client: idempotency records, sync state, Mailchimp's connection limiter and
    # accessplanit's request budget share its pool.
    redis = connect(settings)
    targets = targets or {
        System.MAILCHIMP: MailchimpTarget.from_settings(settings, redis),
        System.ACCESSPLANIT: AccessplanitTarget.from_settings(redis, AccessplanitSettings()),
    }
    registry = registry or TopicInstanceRegistry(kafka)
    store = RedisIdempotencyStore(
        redis,
        inflight_ttl_s=settings.inflight_ttl_s,
        idempotency_ttl_s=settings.idempotency_ttl_s,
        contact_marker_ttl_s=settings.contact_marker_ttl_s,
    )
    delivery = Delivery(
        registry=registry,
        targets=targets,
        store=store,
        sink=ProducerSink(producer),
        tracer=producer,
        policy=RetryPolicy.from_delays(settings.retry_delays_s),
        state=RedisStateStore(redis),
    )
    consumer = PartitionedConsumer(
        lambda: kafka.consumer(
            **consumer_options(
                group_id=settings.group_id,
                group_instance_id=settings.group_instance_id,
                max_poll_interval_ms=settings.max_poll_interval_ms,
                session_timeout_ms=settings.session_timeout_ms,
            ),
        ),
        topics=[COMMANDS, *COMMANDS_RETRY],
        strategy=delivery_strategy(
            delivery,
            concurrency=settings.partition_concurrency,
            contact_interval_s=settings.contact_write_interval_s,
        ),
        max_buffered=settings.max_buffered_per_partition,
        shutdown_grace_s=settings.shutdown_grace_s,
    )

    async def close_targets() -> None:
        for target in targets.values():
            await target.close()

    return AsgiFastStream(
        broker,
        asgi_routes=[
            ("/health/live", live),
            ("/health/ready", readiness(broker, consumer)),
            ("/metrics", MetricsEndpoint()),
        ],
        on_startup=[registry.start, producer.start],
        # The consumer starts once the producer is connected, and stops first: in-flight writes finish and are
        # traced and committed while the producer is still there.
        after_startup=[consumer.start],
        on_shutdown=[
            consumer.stop,
            producer.stop,
            close_targets,
            registry.stop,
            store.close,
            delivery.close,
            redis.aclose,
        ],
    )
