"""Writer: SyncCommands from `tandem.commands` (and its retry tiers) applied to their target exactly once in effect.

The delivery layer (`delivery.py`) decides what happens to each command and traces it; the shared partitioned
consumer feeds it partition by partition (`strategy.py`) and commits only what is durably done. FastStream's
broker serves as the producer (trace records, retry and dead-letter forwards, acks=all) and for the health routes.
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer
from faststream.asgi import AsgiFastStream, AsgiResponse, get
from faststream.asgi.handlers import GetHandler
from faststream.kafka import KafkaBroker

from tandem_shared.contracts import System
from tandem_shared.contracts.topics import COMMANDS, COMMANDS_RETRY
from tandem_shared.instance_store import TopicInstanceRegistry
from tandem_shared.instances import InstanceRegistry
from tandem_shared.kafka import make_broker
from tandem_shared.logging import configure_logging
from tandem_shared.metrics import MetricsEndpoint
from tandem_shared.partitioned import PartitionedConsumer, consumer_options
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


class BrokerSink:
    """Forwards records through the broker's idempotent acks=all producer; returns once the broker has them."""

    def __init__(self, broker: KafkaBroker) -> None:
        self._broker = broker

    async def send(
        self, topic: str, value: bytes, *, key: bytes | None, partition: int, headers: dict[str, str]
    ) -> None:
        await self._broker.publish(value, topic=topic, key=key, partition=partition, headers=headers)


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
    broker = make_broker(settings.kafka_bootstrap_servers, client_id="tandem-writer")
    # The writer's one Redis client: idempotency records, sync state, Mailchimp's connection limiter and
    # accessplanit's request budget share its pool.
    redis = connect(settings)
    targets = targets or {
        System.MAILCHIMP: MailchimpTarget.from_settings(settings, redis),
        System.ACCESSPLANIT: AccessplanitTarget.from_settings(redis, AccessplanitSettings()),
    }
    registry = registry or TopicInstanceRegistry(settings.kafka_bootstrap_servers)
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
        sink=BrokerSink(broker),
        tracer=broker,
        policy=RetryPolicy.from_delays(settings.retry_delays_s),
        state=RedisStateStore(redis),
    )
    consumer = PartitionedConsumer(
        lambda: AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            client_id="tandem-writer",
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
        on_startup=[registry.start],
        # The consumer starts once the broker (our producer) is connected, and stops first: in-flight writes
        # finish and are traced and committed while the producer is still there.
        after_startup=[consumer.start],
        on_shutdown=[consumer.stop, close_targets, registry.stop, store.close, delivery.close, redis.aclose],
    )
