"""The mapper's composition root: the service on its adapters, each replaceable (tests inject in-memory ones).

Anything not injected is built from the settings: Kafka clients from one `KafkaConnection`, the one Redis client
of the process from `tandem_shared.redis.client.connect`. `entrypoint` puts the result behind FastStream and ASGI.
"""

from __future__ import annotations

from dataclasses import dataclass

from faststream.kafka import KafkaBroker

from tandem_mapper.erasure import ErasureApplier
from tandem_mapper.service import Mapper
from tandem_mapper.settings import MapperSettings
from tandem_shared.instance_store import TopicInstanceRegistry
from tandem_shared.instances import InstanceRegistry
from tandem_shared.kafka import KafkaConnection, KafkaProducer, Producer
from tandem_shared.reconcile.tombstones import Tombstones
from tandem_shared.redis.client import connect
from tandem_shared.redis.erasure import ContactEraser, RedisContactEraser
from tandem_shared.redis.state import RedisStateStore, StateStore

# The Kafka client id, and through it the `service` label of the Kafka kit's metrics.
CLIENT_ID = "tandem-mapper"


@dataclass(frozen=True)
class Built:
    """The mapper and what it runs on; the caller starts them in this order and stops them in reverse."""

    broker: KafkaBroker
    producer: Producer
    mapper: Mapper
    registry: InstanceRegistry
    state: StateStore
    erasure: ErasureApplier


def bootstrap(
    settings: MapperSettings,
    *,
    producer: Producer | None = None,
    state: StateStore | None = None,
    registry: InstanceRegistry | None = None,
    eraser: ContactEraser | None = None,
) -> Built:
    kafka = KafkaConnection.from_settings(settings, CLIENT_ID)
    producer = producer or KafkaProducer(kafka)
    registry = registry or TopicInstanceRegistry(kafka)
    # The mapper's one Redis client (connected on first use), owned (and closed) by its state store; erasure and
    # reconciliation's tombstones share it. Tombstones are kept only with Redis's state (an injected store: a test).
    redis = connect(settings)
    tombstones = Tombstones(redis) if state is None else None
    state = state or RedisStateStore(redis, ttl_s=settings.state_ttl_days * 24 * 3600, owns_client=True)
    erasure = ErasureApplier(kafka, producer, registry, eraser or RedisContactEraser(redis, "mapper"))
    deletions = tombstones.record_deletions if tombstones is not None else None
    mapper = Mapper(producer, settings, registry, state, deletions=deletions)
    return Built(kafka.broker(), producer, mapper, registry, state, erasure)
