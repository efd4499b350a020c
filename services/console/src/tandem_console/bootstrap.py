"""The console's composition root: its store, the follower of `tandem.trace` into it, the producer and instance
registry its actions publish through, and replay; each replaceable (tests inject their own).

Anything not injected is built from the settings, the Kafka clients from one `KafkaConnection`. `app` serves the
result over ASGI; `rebuild` uses the same store and follower.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from tandem_console.actions import InstanceActions, Replayer
from tandem_console.consumer import TraceConsumer
from tandem_console.erasure import ErasureRequests, console_erasure
from tandem_console.reconcile import ReconcileRuns
from tandem_console.service import Console
from tandem_console.settings import ConsoleSettings
from tandem_console.store import TraceStore
from tandem_shared.contracts import InstanceConfig
from tandem_shared.erasure import ErasureApplier
from tandem_shared.instance_store import TopicInstanceRegistry, put_instance
from tandem_shared.instances import InstanceRegistry
from tandem_shared.kafka import KafkaConnection, KafkaProducer

# The Kafka client id, and through it the `service` label of the Kafka kit's metrics.
CLIENT_ID = "tandem-console"


def kafka_connection(settings: ConsoleSettings) -> KafkaConnection:
    return KafkaConnection.from_settings(settings, CLIENT_ID)


def trace_consumer(settings: ConsoleSettings, kafka: KafkaConnection, store: TraceStore) -> TraceConsumer:
    retention = timedelta(days=settings.retention_days)
    return TraceConsumer(kafka, store, batch_size=settings.batch_size, retention=retention)


@dataclass(frozen=True)
class Built:
    """The console and what it runs on; `app` starts them, and stops them in reverse."""

    settings: ConsoleSettings
    store: TraceStore
    consumer: TraceConsumer
    producer: KafkaProducer
    registry: InstanceRegistry
    console: Console
    erasure: ErasureApplier
    erasure_requests: ErasureRequests
    reconcile: ReconcileRuns


def bootstrap(
    settings: ConsoleSettings,
    *,
    registry: InstanceRegistry | None = None,
    producer: KafkaProducer | None = None,
    store: TraceStore | None = None,
    consumer: TraceConsumer | None = None,
    replayer: Replayer | None = None,
) -> Built:
    kafka = kafka_connection(settings)
    registry = registry or TopicInstanceRegistry(kafka)
    producer = producer or KafkaProducer(kafka)
    store = store or TraceStore(settings.database_url)
    consumer = consumer or trace_consumer(settings, kafka, store)

    async def put(config: InstanceConfig) -> None:
        await put_instance(kafka, config)

    instance_actions = InstanceActions(registry, put, publish_timeout_s=settings.publish_timeout_s)
    replayer = replayer or Replayer(kafka, producer, store)
    console = Console(settings, store, registry, instance_actions, replayer)
    # Before the registry starts: the deletions it finds on the topic are stored as it reads them.
    registry.on_delete(console.instance_deleted)
    erasure = console_erasure(kafka, producer, store)
    erasure_requests = ErasureRequests(producer, settings.publish_timeout_s)
    reconcile = ReconcileRuns(kafka, producer, registry, publish_timeout_s=settings.publish_timeout_s)
    return Built(settings, store, consumer, producer, registry, console, erasure, erasure_requests, reconcile)
