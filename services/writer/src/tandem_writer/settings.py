from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from tandem_shared.settings import CommonSettings
from tandem_writer.domain.move_wait import MOVE_GRACE_S

DAY_S = 24 * 60 * 60


class WriterSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="TANDEM_WRITER_", extra="ignore", env_ignore_empty=True)

    group_id: str = "tandem-writer"
    # Static group membership (the pod name in the StatefulSet): a restarted pod gets its partitions back without
    # a rebalance of the whole group. A static member does not leave the group on shutdown; the session timeout
    # hands its partitions over if it does not come back.
    group_instance_id: str | None = None
    http_timeout_s: float = 30.0

    # Mailchimp allows 10 simultaneous connections per account; every writer replica shares these through Redis.
    mailchimp_max_connections: int = 10
    # A slot's lease in Redis, renewed while its request runs: a crashed replica's slots return after this long.
    mailchimp_lease_s: float = 15.0
    # How long a write waits for a free slot before it is given back as a transient failure (retried later).
    mailchimp_slot_wait_s: float = 60.0
    # Mailchimp may keep working on a request we timed out on for up to 120 s; its slot stays taken that long.
    mailchimp_timed_out_slot_hold_s: float = 120.0
    # Upserts to one audience queued behind busy connections go out together as one batch subscribe of at most
    # this many members (Mailchimp takes up to 500); 1 sends every upsert as its own PUT.
    mailchimp_batch_max: int = Field(default=200, ge=1, le=500)
    # Delay before each retry of a transiently failed write; attempts in all = len + 1. JSON in the environment:
    # TANDEM_WRITER_RETRY_DELAYS_S='[1,2,4,8,16]'.
    retry_delays_s: list[float] = Field(default_factory=lambda: [10.0, 60.0, 300.0, 1800.0, 7200.0])
    # How long a change stays recorded as applied, so a redelivery or replay within it is skipped.
    idempotency_ttl_s: int = 7 * DAY_S
    # How long "last applied change per contact" is kept, so an old retry or replay never overwrites newer data.
    # Longer than the dead-letter topic's retention (30 days): a replay can only come from there.
    contact_marker_ttl_s: int = 35 * DAY_S
    # A claim left by a writer that died mid-write expires after this; it must outlast one HTTP write.
    inflight_ttl_s: float = 120.0
    # On SIGTERM (and on a rebalance), in-flight writes get this long to finish: one vendor call and a margin.
    shutdown_grace_s: float = 35.0
    # Records of tandem.commands one partition worker has in hand at once, never two of one contact: a write waiting
    # on a vendor no longer holds up the partition's other contacts. Retry tiers keep one (they wait until due).
    # Enough in hand that a backlog fills Mailchimp batches; waiting writes cost no Redis polling (only one sender
    # per connection slot waits on the limiter) and little memory (`max_buffered_per_partition` bounds the fetch).
    # On a machine with CPU to spare the writer's rate is what it has in hand over a command's time in it (a batch
    # subscribe is 150 ms + 2 ms a member): 96 a partition wrote a 10,000-user backfill at 977 members/s against
    # 677 with 48, and raised its ceiling from 848 to 1,209/s (bench-reconcile, same quiet machine).
    partition_concurrency: int = 96
    # A Mailchimp profile change at an address Tandem knows no contact at creates no accessplanit user for this long
    # after the mapper decided it: the address change moving a known contact there may still be on its way
    # (`tandem_writer.domain.move_wait`). 0 creates at once (the user may then be a second one).
    move_grace_s: float = Field(default=MOVE_GRACE_S, ge=0)
    # A contact's next write to a target starts no sooner than this after its previous one; the changes that arrive
    # meanwhile are folded into that next write. 0 writes every change as soon as its contact is free.
    contact_write_interval_s: float = 1.0
    # Records fetched ahead per partition; beyond it the partition is paused until its worker catches up.
    max_buffered_per_partition: int = 100
    # Reconciliation runs (`tandem reconcile`), executed here because the writer holds the vendor credentials.
    # False: this writer leaves them to the reconciler role of this package (`tandem_writer.reconciler`, the same
    # settings and credentials in a process of its own), so a run's reading, comparing and publishing never takes
    # the live writer's CPU.
    reconcile_runs: bool = True
    # Their request consumer's group; unset: "<group_id>-reconcile".
    reconcile_group_id: str | None = None
    # The lease one replica holds on an instance while it runs its reconciliation (renewed at a third of it): a
    # replica that dies hands the run, from its checkpoint, to another after this long.
    reconcile_lease_s: float = Field(default=30.0, gt=0)
    # How often unfinished runs are looked for (a checkpoint left by a stopped replica) and schedules checked.
    reconcile_tick_s: float = Field(default=5.0, gt=0)
    # The share of an accessplanit module's request budget one run's reads may take: the writer's own writes and
    # the poller need the rest (and go first at the shared budget anyway: reconciliation is its lowest class).
    reconcile_accessplanit_share: float = Field(default=0.25, gt=0, le=1)
    # A request older than this when it is read (e.g. left on the topic while no writer ran) is not started.
    reconcile_request_expiry_s: float = Field(default=900.0, gt=0)
    # Members a second the pipeline writes to Mailchimp, for the ETA of a repair run's writes: the batch endpoint's
    # ideal (10 connections × 500 members ÷ ~5 s a batch under the simulator's per-member latency model).
    reconcile_mailchimp_members_per_s: float = Field(default=1000.0, gt=0)
    max_poll_interval_ms: int = 300_000
    session_timeout_ms: int = 10_000

    @model_validator(mode="after")
    def _check(self) -> WriterSettings:
        if len(self.retry_delays_s) < 4:
            raise ValueError("retry_delays_s: at least 4 retries (5 attempts in all) are promised to operators")
        if any(d < 0 for d in self.retry_delays_s):
            raise ValueError("retry_delays_s: delays cannot be negative")
        if self.inflight_ttl_s <= self.http_timeout_s:
            raise ValueError("inflight_ttl_s must be longer than http_timeout_s, or a live write could lose its claim")
        return self
