"""Reconciliation runs, executed in the writer (the service that holds the vendor credentials).

The CLI, the console and an instance's schedule only publish a `ReconcileRequest` onto `tandem.reconcile.requests`.
Here a request is accepted by writing its checkpoint to Redis (and the instance into the set of unfinished runs)
before its offset is committed; a run then executes under the instance's lease, so two runs of one instance never
overlap, across replicas and restarts. A replica that stops or dies leaves the checkpoint behind: whichever replica
next takes the lease resumes the run from it.

Scheduled runs: every `reconcile.every` an instance gets a request (one replica publishes it: the first to set the
instance's `scheduled` key, which expires after the interval).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta

from pydantic import ValidationError
from redis.asyncio import Redis

from tandem_shared.contact_hash import contact_hash
from tandem_shared.contracts import InstanceConfig, utcnow
from tandem_shared.contracts.envelopes import reconcile_request_envelope, reconcile_update_envelope
from tandem_shared.contracts.reconcile import (
    ReconcileProgress,
    ReconcileRequest,
    ReconcileUpdate,
    RequestedBy,
    RunStatus,
)
from tandem_shared.contracts.topics import RECONCILE_REQUESTS
from tandem_shared.instances import InstanceRegistry
from tandem_shared.kafka import KafkaConnection, Producer
from tandem_shared.kafka.partitioned import (
    ConsumerClient,
    InboundRecord,
    KeyedStrategy,
    PartitionedConsumer,
    consumer_options,
)
from tandem_shared.kafka.producer import send_envelope
from tandem_shared.logging import get_logger
from tandem_shared.metrics import RECONCILE_LAST_DRIFT, RECONCILE_RUNS
from tandem_shared.reconcile.domain import Category, Policy
from tandem_shared.reconcile.tombstones import Tombstones
from tandem_shared.redis.client import text
from tandem_shared.redis.keys import (
    RECONCILE_UNFINISHED,
    reconcile_checkpoint_key,
    reconcile_last_key,
    reconcile_lock_key,
    reconcile_scheduled_key,
)
from tandem_shared.redis.lease import Leases
from tandem_shared.vendors.accessplanit.client import AccessplanitClients, AccessplanitError
from tandem_shared.vendors.mailchimp.client import MailchimpClients, MailchimpError
from tandem_writer.reconcile_run import Limits, ReconcileRun, RunAborted
from tandem_writer.settings import WriterSettings

log = get_logger("tandem.writer.reconcile")


def _refusal(request: ReconcileRequest, message: str) -> ReconcileUpdate:
    now = utcnow()
    progress = ReconcileProgress(
        run_id=request.run_id,
        instance_id=request.instance_id,
        status=RunStatus.REFUSED,
        phase="refused",
        dry_run=not request.repair,
        message=message,
        started_at=now,
        at=now,
    )
    return ReconcileUpdate(progress=progress)


class ReconcileService:
    def __init__(
        self,
        *,
        kafka: KafkaConnection,
        producer: Producer,
        registry: InstanceRegistry,
        redis: Redis,
        accessplanit: AccessplanitClients,
        mailchimp: MailchimpClients,
        settings: WriterSettings,
        limits: Limits,
        consumer_factory: Callable[[], ConsumerClient] | None = None,
    ) -> None:
        self._producer = producer
        self._registry = registry
        self._redis = redis
        self._ap = accessplanit
        self._mc = mailchimp
        self._settings = settings
        self._limits = limits
        group = settings.reconcile_group_id or f"{settings.group_id}-reconcile"
        options = consumer_options(
            group_id=group,
            max_poll_interval_ms=settings.max_poll_interval_ms,
            session_timeout_ms=settings.session_timeout_ms,
        )
        # The services' consumer kit, as for commands: a request's offset is committed once it is accepted (its
        # checkpoint written) or refused; one that fails on Redis or Kafka is tried again, never skipped.
        self._consumer = PartitionedConsumer(
            consumer_factory or (lambda: kafka.consumer(**options)),
            topics=[RECONCILE_REQUESTS],
            strategy=lambda partition, progress: KeyedStrategy(partition, self._handle, progress=progress),
            service=kafka.service,
            shutdown_grace_s=settings.shutdown_grace_s,
        )
        self._leases = Leases(redis, settings.reconcile_lease_s)
        self._tombstones = Tombstones(redis)
        self._owner = uuid.uuid4().hex
        self._runs: dict[str, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()

    async def start(self) -> None:
        await self._consumer.start()
        self._tasks = [asyncio.create_task(self._tick(), name="reconcile-runs")]

    async def stop(self) -> None:
        """Running runs stop where they are: their checkpoints stay, their leases are released for another replica."""
        for task in [*self._tasks, *self._runs.values()]:
            task.cancel()
        for task in [*self._tasks, *self._runs.values()]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for instance_id in list(self._runs):
            with contextlib.suppress(Exception):
                await self._leases.release(reconcile_lock_key(instance_id), self._owner)
        self._runs.clear()
        await self._consumer.stop()

    # -- requests ------------------------------------------------------------------------------------------------

    async def _handle(self, record: InboundRecord, _absorbed: Sequence[InboundRecord]) -> None:
        await self._accept_record(record.value)

    async def _accept_record(self, value: bytes | None) -> None:
        if value is None:
            return
        try:
            request = ReconcileRequest.model_validate_json(value)
        except ValidationError as exc:
            log.warning("reconciliation request is not valid; dropped", error=str(exc)[:300])
            return
        await self.accept(request)

    async def accept(self, request: ReconcileRequest) -> None:
        age = utcnow() - request.requested_at
        if age > timedelta(seconds=self._settings.reconcile_request_expiry_s):
            log.info("stale reconciliation request skipped", run_id=request.run_id, instance_id=request.instance_id)
            return
        problem = self._problem(request)
        if problem is None:
            key = reconcile_checkpoint_key(request.instance_id)
            if not await self._redis.hsetnx(key, "run_id", request.run_id):
                current = await self._redis.hget(key, "run_id")
                if current is not None and text(current) == request.run_id:
                    return  # this request again (redelivered): accepted already
                problem = f"run {text(current) if current else '?'} of instance {request.instance_id} is in progress"
            else:
                await self._redis.hset(key, mapping={"request": request.model_dump_json(), "after": ""})
                await self._redis.sadd(RECONCILE_UNFINISHED, request.instance_id)
                self._wake.set()
                return
        log.info("reconciliation request refused", run_id=request.run_id, reason=problem)
        RECONCILE_RUNS.labels(RunStatus.REFUSED.value).inc()
        await (await send_envelope(self._producer, reconcile_update_envelope(_refusal(request, problem))))

    def _problem(self, request: ReconcileRequest) -> str | None:
        if self._registry.get(request.instance_id) is None:
            return f"no instance {request.instance_id}"
        if request.config is not None:
            if request.repair:
                return "a shadow run (--config) only compares; apply the configuration to repair under it"
            if request.config.id != request.instance_id:
                return f"the candidate configuration is for instance {request.config.id}, not {request.instance_id}"
        return None

    # -- runs ----------------------------------------------------------------------------------------------------

    async def _tick(self) -> None:
        while True:
            try:
                await self._start_runs()
                await self._schedule()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away for a moment: the next tick tries again
                log.warning("reconciliation tick failed", error=str(exc))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._settings.reconcile_tick_s)

    async def _start_runs(self) -> None:
        for raw in await self._redis.smembers(RECONCILE_UNFINISHED):
            instance_id = text(raw)
            if instance_id in self._runs:
                continue
            if await self._leases.acquire(reconcile_lock_key(instance_id), self._owner):
                task = asyncio.create_task(self._run(instance_id), name=f"reconcile-{instance_id}")
                self._runs[instance_id] = task
                task.add_done_callback(functools.partial(self._ended, instance_id))

    def _ended(self, instance_id: str, _: asyncio.Task[None]) -> None:
        self._runs.pop(instance_id, None)

    async def _schedule(self) -> None:
        for instance in self._registry.all():
            schedule = instance.reconcile
            if schedule is None or instance.paused:
                continue
            run_id = f"sched-{uuid.uuid4().hex[:16]}"
            ttl = max(1, int(schedule.every_s))
            if await self._redis.set(reconcile_scheduled_key(instance.id), run_id, nx=True, ex=ttl):
                request = ReconcileRequest(
                    run_id=run_id,
                    instance_id=instance.id,
                    repair=schedule.repair,
                    requested_by=RequestedBy.SCHEDULE,
                    requested_at=utcnow(),
                )
                await (await send_envelope(self._producer, reconcile_request_envelope(request)))

    async def _keep_lease(self, instance_id: str, held: list[bool]) -> None:
        while True:
            await asyncio.sleep(self._settings.reconcile_lease_s / 3)
            try:
                held[0] = await self._leases.renew(reconcile_lock_key(instance_id), self._owner)
            except Exception as exc:  # Redis away: the lease may lapse; the run stops at its next check
                log.warning("reconciliation lease renewal failed", instance_id=instance_id, error=str(exc))
                held[0] = False
            if not held[0]:
                return

    async def _run(self, instance_id: str) -> None:
        held = [True]
        keeper = asyncio.create_task(self._keep_lease(instance_id, held))
        key = reconcile_checkpoint_key(instance_id)
        try:
            checkpoint = {text(k): text(v) for k, v in (await self._redis.hgetall(key)).items()}
            if "request" not in checkpoint:
                await self._redis.srem(RECONCILE_UNFINISHED, instance_id)
                return
            request = ReconcileRequest.model_validate_json(checkpoint["request"])
            resumed = checkpoint.get("started") == "1"
            await self._redis.hset(key, "started", "1")
            instance = request.config or self._registry.get(instance_id)
            if instance is None:
                refusal = _refusal(request, f"instance {instance_id} was deleted")
                await self._finish(request, refusal.progress)
                await (await send_envelope(self._producer, reconcile_update_envelope(refusal)))
                return
            progress = await self._execute(request, instance, checkpoint.get("after", ""), resumed, held)
            await self._finish(request, progress)
            # Only now, with the checkpoint gone: a client that sees the outcome may request the next run at once.
            try:
                outcome = reconcile_update_envelope(ReconcileUpdate(progress=progress))
                await (await send_envelope(self._producer, outcome))
            except Exception as exc:  # the outcome is in Redis (reconcile:last) and the metrics all the same
                log.warning("reconciliation outcome not published", run_id=request.run_id, error=str(exc))
        except RunAborted:
            log.info("reconciliation run lost its lease; its checkpoint stays for a resume", instance_id=instance_id)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            with contextlib.suppress(Exception):
                await self._leases.release(reconcile_lock_key(instance_id), self._owner)

    async def _execute(
        self, request: ReconcileRequest, instance: InstanceConfig, after: str, resumed: bool, held: list[bool]
    ) -> ReconcileProgress:
        key = reconcile_checkpoint_key(instance.id)

        async def save(position: str, progress: ReconcileProgress) -> None:
            await self._redis.hset(key, mapping={"after": position, "published": str(progress.published)})

        run: ReconcileRun | None = None
        try:
            tombstones = await self._tombstones.load(instance.id)
            policy = Policy(
                repair=request.repair and request.config is None,
                only=request.only,
                tombstones=tombstones,
                tombstone_digest=contact_hash,
            )
            run = ReconcileRun(
                request,
                instance,
                accessplanit=self._ap.for_instance(instance),
                mailchimp=self._mc.for_instance(instance),
                producer=self._producer,
                policy=policy,
                limits=self._limits,
                after=after,
                resumed=resumed,
                still_ours=lambda: held[0],
            )
            return await run.execute(save)
        except (AccessplanitError, MailchimpError) as exc:
            message = f"{type(exc).__name__}: {exc.error.message}"
        except (RunAborted, asyncio.CancelledError):
            raise
        except Exception as exc:  # a bug or an outage: the run fails visibly instead of resuming in a loop
            log.exception("reconciliation run failed", instance_id=instance.id)
            message = f"{type(exc).__name__}: {exc}"
        base = run.progress if run is not None else _refusal(request, message).progress
        return base.model_copy(update={"status": RunStatus.FAILED, "phase": "failed", "message": message})

    async def _finish(self, request: ReconcileRequest, progress: ReconcileProgress) -> None:
        instance_id = request.instance_id
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(reconcile_checkpoint_key(instance_id))
            pipe.srem(RECONCILE_UNFINISHED, instance_id)
            summary = {
                "run_id": request.run_id,
                "status": progress.status.value,
                "finished_at": utcnow().isoformat(),
                "progress": progress.model_dump_json(),
            }
            pipe.hset(reconcile_last_key(instance_id), mapping=summary)  # type: ignore[arg-type]
            await pipe.execute()
        RECONCILE_RUNS.labels(progress.status.value).inc()
        if progress.status is RunStatus.DONE:
            for category in Category:
                if category is not Category.EQUAL:
                    RECONCILE_LAST_DRIFT.labels(category.value).set(progress.counts.get(category.value, 0))
        log.info("reconciliation run ended", run_id=request.run_id, status=progress.status.value)


def limits_from(settings: WriterSettings, requests_per_window: int, window_s: float) -> Limits:
    return Limits(
        ap_requests_per_window=requests_per_window,
        ap_window_s=window_s,
        ap_share=settings.reconcile_accessplanit_share,
        mailchimp_members_per_s=settings.reconcile_mailchimp_members_per_s,
    )
