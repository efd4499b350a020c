"""Ingest's composition root: the webhook routes and the catch-up poller on their adapters, each replaceable
(tests inject in-memory or recording ones).

Anything not injected is built from the settings: Kafka clients from one `KafkaConnection`, the one Redis client
of the process from `tandem_shared.redis.client.connect` (claims, poller cursors and leases, request budget), the
accessplanit clients from `tandem_shared.vendors.accessplanit`. `entrypoint` serves the result over ASGI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis

from tandem_ingest.accessplanit_changes import ApiChangedUsers, ApiUserReader, CoalescingUserReader, UserReader
from tandem_ingest.accessplanit_webhook import AccessplanitWebhook
from tandem_ingest.catch_up import CatchUp, RedisRereadAllowance, RereadAllowance
from tandem_ingest.dedupe import EventClaims, RedisEventClaims
from tandem_ingest.erasure import KEPT as ERASURE_KEPT
from tandem_ingest.erasure import IngestEraser
from tandem_ingest.intake import DedupedSink, EventPublisher, Intake
from tandem_ingest.mailchimp_webhook import MailchimpWebhook
from tandem_ingest.poll_state import PollerLocks, RedisCursorStore
from tandem_ingest.poller import (
    AccessplanitPoller,
    ChangedUsers,
    CursorStore,
    DeferredUsers,
    InstanceLocks,
    PollerConfig,
)
from tandem_ingest.publishing import ChangePublisher
from tandem_ingest.settings import IngestSettings
from tandem_shared.contracts import TraceRecord
from tandem_shared.erasure import ErasureApplier
from tandem_shared.instance_store import TopicInstanceRegistry
from tandem_shared.instances import InstanceRegistry
from tandem_shared.kafka import KafkaConnection, KafkaProducer, Producer
from tandem_shared.ratelimit import RateBudget
from tandem_shared.redis.client import connect
from tandem_shared.redis.deferred import RedisDeferredDeliveries
from tandem_shared.tracing import publish_trace
from tandem_shared.vendors.accessplanit.client import AccessplanitClients
from tandem_shared.vendors.accessplanit.settings import AccessplanitSettings

# The Kafka client id, and through it the `service` label of the Kafka kit's metrics.
CLIENT_ID = "tandem-ingest"


class ServiceProducer(Producer, Protocol):
    async def ping(self, timeout: float) -> bool:  # noqa: ASYNC109 (the readiness probe's budget)
        """True when Kafka answers within `timeout` seconds (the readiness probe)."""
        ...


@dataclass(frozen=True)
class Ingest:
    """Ingest and what it runs on; `entrypoint` starts them, and stops them in reverse."""

    settings: IngestSettings
    registry: InstanceRegistry
    producer: ServiceProducer
    redis: Redis
    clients: AccessplanitClients
    accessplanit_webhook: AccessplanitWebhook
    mailchimp_webhook: MailchimpWebhook
    poller: AccessplanitPoller
    locks: InstanceLocks
    # Applies erasure requests (None when the producer is injected: a test without Kafka).
    erasure: ErasureApplier | None = None


def bootstrap(
    settings: IngestSettings,
    *,
    registry: InstanceRegistry | None = None,
    producer: ServiceProducer | None = None,
    publisher: EventPublisher | None = None,
    claims: EventClaims | None = None,
    clients: AccessplanitClients | None = None,
    reader: UserReader | None = None,
    users: ChangedUsers | None = None,
    cursors: CursorStore | None = None,
    locks: InstanceLocks | None = None,
    deferred: DeferredUsers | None = None,
    allowance: RereadAllowance | None = None,
) -> Ingest:
    kafka = KafkaConnection.from_settings(settings, CLIENT_ID)
    registry = registry or TopicInstanceRegistry(kafka)
    redis = connect(settings)  # connects on first use: nothing is opened for what the caller injected
    erasure = None
    if producer is None:
        producer = KafkaProducer(kafka)
        erasure = ErasureApplier(kafka, producer, "ingest", IngestEraser(redis, "ingest"), kept=ERASURE_KEPT)
    clients = clients or AccessplanitClients(redis, AccessplanitSettings())
    publisher = publisher or ChangePublisher(producer, settings.publish_timeout_s, registry)
    claims = claims or RedisEventClaims(
        redis, pending_ttl_s=settings.dedupe_pending_ttl_s, done_ttl_s=settings.dedupe_done_ttl_s
    )
    intake = Intake(publisher, claims)
    locks = locks or PollerLocks(redis, ttl_s=max(3 * settings.poll_interval_s, 30.0))

    async def trace(record: TraceRecord) -> None:
        await publish_trace(producer, record)

    reader = reader or CoalescingUserReader(
        ApiUserReader(clients),
        settings.accessplanit_reread_window_s,
        min_interval_s=settings.accessplanit_reread_min_interval_s,
    )
    deferred = deferred or RedisDeferredDeliveries(redis)
    poller = AccessplanitPoller(
        registry=registry,
        users=users or ApiChangedUsers(clients),
        intake=intake,
        cursors=cursors or RedisCursorStore(redis),
        locks=locks,
        trace=trace,
        config=PollerConfig(
            interval_s=settings.poll_interval_s,
            page_size=settings.poll_page_size,
            max_pages=settings.poll_max_pages,
            overlap_s=settings.poll_overlap_s,
            wake_min_interval_s=settings.poll_wake_min_interval_s,
            clock_skew_s=settings.poll_clock_skew_s,
        ),
        deferred=deferred,
        reader=reader,
    )
    rereads = RateBudget(redis, limit=settings.accessplanit_rereads_per_minute, window_s=60)
    catch_up = CatchUp(
        allowance or RedisRereadAllowance(rereads),
        deferred,
        wake=poller.wake,
        trace=trace,
        enabled=settings.poller_enabled,
    )
    return Ingest(
        settings=settings,
        registry=registry,
        producer=producer,
        redis=redis,
        clients=clients,
        accessplanit_webhook=AccessplanitWebhook(settings, registry, intake, reader, catch_up),
        mailchimp_webhook=MailchimpWebhook(settings, registry, DedupedSink(intake)),
        poller=poller,
        locks=locks,
        erasure=erasure,
    )
