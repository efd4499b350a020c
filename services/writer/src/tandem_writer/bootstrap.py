"""The writer's composition root: the one place its adapters are chosen and wired (cosmicpython's `bootstrap.py`).

Every port can be injected (tests pass in-memory fakes from `tests/fakes`); what is not injected is built for real,
from the one `KafkaConnection` and the one Redis client of the process (idempotency records, sync state,
Mailchimp's connection limiter and accessplanit's request budget share its pool).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from redis.asyncio import Redis

from tandem_shared.contracts import System
from tandem_shared.contracts.topics import COMMANDS, COMMANDS_RETRY
from tandem_shared.erasure import ErasureApplier
from tandem_shared.instance_store import TopicInstanceRegistry
from tandem_shared.instances import InstanceRegistry
from tandem_shared.kafka import KafkaConnection, KafkaProducer, Producer
from tandem_shared.kafka.partitioned import ConsumerClient, PartitionedConsumer, consumer_options
from tandem_shared.redis.client import connect
from tandem_shared.redis.deferred import RedisDeferredDeliveries
from tandem_shared.redis.idempotency import IdempotencyStore, RedisIdempotencyStore
from tandem_shared.redis.state import RedisStateStore, StateStore
from tandem_shared.vendors.accessplanit.client import AccessplanitClients
from tandem_shared.vendors.accessplanit.settings import AccessplanitSettings
from tandem_shared.vendors.mailchimp.client import MailchimpClients
from tandem_writer.deferred_edits import UnseenEditGuard
from tandem_writer.delivery import Delivery
from tandem_writer.domain.retry import RetryPolicy
from tandem_writer.erasure import writer_erasure
from tandem_writer.reconcile_service import ReconcileService, limits_from
from tandem_writer.refused_moves import RefusedMoves
from tandem_writer.settings import WriterSettings
from tandem_writer.side_reads import SideReads
from tandem_writer.source_check import (
    AccessplanitUserReader,
    MailchimpMemberReader,
    SourceCheckedTarget,
    SourceReader,
)
from tandem_writer.strategy import delivery_strategy
from tandem_writer.targets.accessplanit import AccessplanitTarget
from tandem_writer.targets.base import Target
from tandem_writer.targets.mailchimp import MailchimpTarget, mailchimp_clients

# The Kafka client id, and through it the `service` label of the Kafka kit's metrics.
CLIENT_ID = "tandem-writer"
# The reconciler role's client id: its metrics (`service` label) and logs are told apart from the live writer's.
RECONCILER_CLIENT_ID = "tandem-reconciler"


@dataclass
class Writer:
    """The composed writer: what the entrypoint starts and stops."""

    kafka: KafkaConnection
    delivery: Delivery
    consumer: PartitionedConsumer
    producer: Producer
    registry: InstanceRegistry
    targets: Mapping[System, Target]
    # What the composition opened itself (an injected port is closed by whoever made it), in closing order.
    owned: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # Reconciliation runs (None in a writer composed with injected targets).
    reconcile: ReconcileService | None = None
    # Applies erasure requests to the writer's markers (None with an injected idempotency store).
    erasure: ErasureApplier | None = None

    async def connect(self) -> None:
        await self.registry.start()
        await self.producer.start()

    async def consume(self) -> None:
        """Once the producer is connected: every command handed to `delivery` can be traced and forwarded."""
        await self.consumer.start()
        if self.reconcile is not None:
            await self.reconcile.start()
        if self.erasure is not None:
            await self.erasure.start()

    async def stop(self) -> None:
        # The consumer stops first: in-flight writes finish and are traced and committed while the producer is
        # still there.
        if self.erasure is not None:
            await self.erasure.stop()
        if self.reconcile is not None:
            await self.reconcile.stop()
        await self.consumer.stop()
        await self.producer.stop()
        for target in self.targets.values():
            await target.close()
        await self.registry.stop()
        for close in self.owned:
            await close()


def with_source_checks(targets: Mapping[System, Target], state: StateStore | None) -> dict[System, Target]:
    """Every target behind the authoritative reads of the sources the writer can read (each vendor's target
    clients read its contacts, from the same budget): a command with a source check is written only as far as its
    source confirms it."""
    readers: dict[System, SourceReader] = {}
    for t in targets.values():
        if isinstance(t, MailchimpTarget):
            readers[t.system] = MailchimpMemberReader(t.clients)
        elif isinstance(t, AccessplanitTarget):
            readers[t.system] = AccessplanitUserReader(t.clients)
    return {system: SourceCheckedTarget(t, readers, state) for system, t in targets.items()}


def _reconcile_service(
    settings: WriterSettings,
    ap_settings: AccessplanitSettings,
    kafka: KafkaConnection,
    producer: Producer,
    registry: InstanceRegistry,
    redis: Redis,
    accessplanit: AccessplanitClients,
    mailchimp: MailchimpClients,
) -> ReconcileService:
    return ReconcileService(
        kafka=kafka,
        producer=producer,
        registry=registry,
        redis=redis,
        accessplanit=accessplanit,
        mailchimp=mailchimp,
        settings=settings,
        limits=limits_from(settings, ap_settings.requests_per_window, ap_settings.window_s),
    )


@dataclass
class Reconciler:
    """The reconciler role: reconciliation runs in a process of their own, with the writer's settings and vendor
    credentials (the same request budgets and Mailchimp connection slots, shared through Redis)."""

    kafka: KafkaConnection
    producer: Producer
    registry: InstanceRegistry
    service: ReconcileService
    # Closed in this order once the service and the producer stopped.
    owned: list[Callable[[], Awaitable[None]]]

    async def start(self) -> None:
        await self.registry.start()
        await self.producer.start()
        await self.service.start()

    async def stop(self) -> None:
        await self.service.stop()
        await self.producer.stop()
        await self.registry.stop()
        for close in self.owned:
            await close()


def bootstrap_reconciler(
    settings: WriterSettings | None = None,
    *,
    producer: Producer | None = None,
    registry: InstanceRegistry | None = None,
) -> Reconciler:
    settings = settings or WriterSettings()
    kafka = KafkaConnection.from_settings(settings, RECONCILER_CLIENT_ID)
    redis = connect(settings)
    ap_settings = AccessplanitSettings()
    accessplanit = AccessplanitClients(redis, ap_settings)
    mailchimp = mailchimp_clients(settings, redis)
    producer = producer or KafkaProducer(kafka)
    registry = registry or TopicInstanceRegistry(kafka)
    service = _reconcile_service(settings, ap_settings, kafka, producer, registry, redis, accessplanit, mailchimp)
    return Reconciler(kafka, producer, registry, service, [accessplanit.close, mailchimp.close, redis.aclose])


def with_refused_moves(targets: Mapping[System, Target], state: StateStore | None) -> dict[System, Target]:
    """Every target behind the record of refused email changes: where each side keeps such a contact."""
    return {system: RefusedMoves(t, state) for system, t in targets.items()}


def bootstrap(
    settings: WriterSettings | None = None,
    *,
    producer: Producer | None = None,
    idempotency: IdempotencyStore | None = None,
    state: StateStore | None = None,
    targets: Mapping[System, Target] | None = None,
    registry: InstanceRegistry | None = None,
    consumer_factory: Callable[[], ConsumerClient] | None = None,
) -> Writer:
    settings = settings or WriterSettings()
    kafka = KafkaConnection.from_settings(settings, CLIENT_ID)
    owned: list[Callable[[], Awaitable[None]]] = []
    redis: Redis | None = None

    def shared_redis() -> Redis:
        nonlocal redis
        if redis is None:
            redis = connect(settings)
        return redis

    producer = producer or KafkaProducer(kafka)
    registry = registry or TopicInstanceRegistry(kafka)
    reconcile: ReconcileService | None = None
    # On the shared client, which is closed below: the state store itself holds nothing to close.
    state = state or RedisStateStore(shared_redis())
    if targets is None:
        ap_settings = AccessplanitSettings()
        mailchimp = MailchimpTarget.from_settings(settings, shared_redis())
        unseen = UnseenEditGuard(RedisDeferredDeliveries(shared_redis()), state)
        accessplanit = AccessplanitTarget.from_settings(
            shared_redis(), ap_settings, unseen, sides=SideReads(state), move_grace_s=settings.move_grace_s
        )
        targets = {System.MAILCHIMP: mailchimp, System.ACCESSPLANIT: accessplanit}
        if settings.reconcile_runs:
            clients = (accessplanit.clients, mailchimp.clients)
            reconcile = _reconcile_service(settings, ap_settings, kafka, producer, registry, shared_redis(), *clients)
    erasure: ErasureApplier | None = None
    if idempotency is None:
        erasure = writer_erasure(kafka, producer, shared_redis(), registry)
        store = RedisIdempotencyStore(
            shared_redis(),
            inflight_ttl_s=settings.inflight_ttl_s,
            idempotency_ttl_s=settings.idempotency_ttl_s,
            contact_marker_ttl_s=settings.contact_marker_ttl_s,
        )
        owned.append(store.close)
        idempotency = store
    if redis is not None:
        owned.append(redis.aclose)

    targets = with_refused_moves(with_source_checks(targets, state), state)
    delivery = Delivery(
        registry=registry,
        targets=targets,
        store=idempotency,
        producer=producer,
        policy=RetryPolicy.from_delays(settings.retry_delays_s),
        state=state,
    )
    options = consumer_options(
        group_id=settings.group_id,
        group_instance_id=settings.group_instance_id,
        max_poll_interval_ms=settings.max_poll_interval_ms,
        session_timeout_ms=settings.session_timeout_ms,
    )
    consumer = PartitionedConsumer(
        consumer_factory or (lambda: kafka.consumer(**options)),
        topics=[COMMANDS, *COMMANDS_RETRY],
        strategy=delivery_strategy(
            delivery,
            concurrency=settings.partition_concurrency,
            contact_interval_s=settings.contact_write_interval_s,
        ),
        service=kafka.service,
        max_buffered=settings.max_buffered_per_partition,
        shutdown_grace_s=settings.shutdown_grace_s,
    )
    return Writer(kafka, delivery, consumer, producer, registry, targets, owned, reconcile, erasure)
