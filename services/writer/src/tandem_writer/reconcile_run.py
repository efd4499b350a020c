"""One reconciliation run: read both sides in full, compare them (`tandem_shared.reconcile.domain`), report every
contact that is not equal and, on a repair run, publish each repair as a change onto `tandem.changes`.

Reads are paid at the "reconciliation" priority of each vendor's shared budget, so live writes and authoritative
reads go first; accessplanit reads are further held to a share of the module's hourly budget (the writer and the
poller need the rest). Report rows and repairs go out in address order; after each batch Kafka acknowledged, the
position is checkpointed in Redis, so a run interrupted part-way resumes after the last contact it published and
publishes none twice.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tandem_shared.contracts import InstanceConfig, System, utcnow
from tandem_shared.contracts.envelopes import change_envelope, reconcile_update_envelope
from tandem_shared.contracts.reconcile import ReconcileProgress, ReconcileRequest, ReconcileUpdate, ReportRow, RunStatus
from tandem_shared.kafka import Producer
from tandem_shared.kafka.producer import send_envelope
from tandem_shared.metrics import RECONCILE_CONTACTS, RECONCILE_REPAIRS
from tandem_shared.reconcile.domain import (
    Finding,
    Policy,
    Sides,
    accessplanit_select,
    ap_user,
    classify,
    field_pairs,
    mailchimp_fields,
    mc_member,
    repair_event,
    writes_eta_s,
)
from tandem_shared.vendors.accessplanit.client import API_PREFIX, AccessplanitClient, AccessplanitError, odata_string
from tandem_shared.vendors.budget import LocalRateBudget
from tandem_shared.vendors.mailchimp.client import MailchimpClient, MailchimpError, member_path
from tandem_shared.vendors.priority import Priority

PAGE = 1000  # Mailchimp's largest `count`; accessplanit's `$top` maximum as simulated (an assumption there)
BATCH = 500  # report rows and repairs published between two checkpoints
PROGRESS_EVERY_S = 1.0
PACING_SLICE_S = 5.0  # a paced run wakes this often to report progress and check its lease
READ_ATTEMPTS = 8  # about four minutes of growing pauses before a page's read fails the run
T = TypeVar("T")

# Where a checkpoint is saved: (last key published, progress so far).
SaveCheckpoint = Callable[[str, ReconcileProgress], Awaitable[None]]


@dataclass(frozen=True)
class Limits:
    """The vendor limits a run paces itself by and estimates the pipeline's writes with."""

    ap_requests_per_window: int
    ap_window_s: float
    ap_share: float  # of accessplanit's budget, the most a run's reads may take
    mailchimp_members_per_s: float


class RunAborted(RuntimeError):
    """The run lost its lease (another replica took over) or was stopped: it ends without finishing."""


class ReconcileRun:
    def __init__(
        self,
        request: ReconcileRequest,
        instance: InstanceConfig,
        *,
        accessplanit: AccessplanitClient,
        mailchimp: MailchimpClient,
        producer: Producer,
        policy: Policy,
        limits: Limits,
        after: str = "",
        resumed: bool = False,
        still_ours: Callable[[], bool] = lambda: True,
    ) -> None:
        self._request = request
        self._instance = instance
        self._ap = accessplanit
        self._mc = mailchimp
        self._producer = producer
        self._policy = policy
        self._limits = limits
        self._after = after
        self._still_ours = still_ours
        self._pairs = field_pairs(instance, request.fields)
        # The share of accessplanit's budget this run may take, on top of the shared budget's own priorities.
        share = max(1, int(limits.ap_requests_per_window * limits.ap_share))
        self._ap_pace = LocalRateBudget(limit=share, window_s=limits.ap_window_s)
        # Repairs to accessplanit: two requests each (look-up, then create or update) out of the same share.
        self._ap_users_per_window = max(1, share // 2)
        self._ap_writes = LocalRateBudget(limit=self._ap_users_per_window, window_s=limits.ap_window_s)
        started = utcnow()
        self.progress = ReconcileProgress(
            run_id=request.run_id,
            instance_id=request.instance_id,
            status=RunStatus.RUNNING,
            phase="reading accessplanit",
            dry_run=not policy.repair,
            resumed=resumed,
            started_at=started,
            at=started,
        )
        self._last_sent = 0.0
        self._rows: list[ReportRow] = []

    # -- progress ------------------------------------------------------------------------------------------------

    def _update(self, **changes: Any) -> None:
        self.progress = self.progress.model_copy(update={**changes, "at": utcnow()})

    async def _emit(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_sent < PROGRESS_EVERY_S and len(self._rows) < BATCH:
            return
        self._last_sent = now
        rows, self._rows = self._rows, []
        future = await send_envelope(
            self._producer, reconcile_update_envelope(ReconcileUpdate(progress=self.progress, rows=rows))
        )
        await future

    def _check(self) -> None:
        if not self._still_ours():
            raise RunAborted(f"run {self._request.run_id} lost its lease on instance {self._instance.id}")

    def _requests(self, vendor: System) -> dict[str, int]:
        spent = dict(self.progress.requests)
        spent[vendor.value] = spent.get(vendor.value, 0) + 1
        return spent

    def _read_eta(self, started: float, read: int, total: int | None, other_left: int) -> float | None:
        if not total or not read:
            return None
        per_record = (time.monotonic() - started) / read
        return per_record * (max(0, total - read) + other_left)

    # -- reading -------------------------------------------------------------------------------------------------

    async def _read_accessplanit(self, sides: Sides) -> None:
        select = accessplanit_select(self._instance)
        started, skip = time.monotonic(), 0
        while True:
            self._check()
            await self._ap_pace.take("reads", max_wait_s=self._limits.ap_window_s)
            params = {"$orderby": "ID", "$top": str(PAGE), "$skip": str(skip), "$select": select, "$count": "true"}
            if self._request.since is not None:
                params["$filter"] = f"DateUpdated ge {odata_string(self._request.since.isoformat())}"
            found = await _retrying(
                functools.partial(
                    self._ap.request_json,
                    "GET",
                    f"{API_PREFIX}/User",
                    action="read users for a reconciliation",
                    priority=Priority.RECONCILIATION,
                    params=params,
                )
            )
            results = found.get("results") if isinstance(found, dict) else None
            page = [r for r in results if isinstance(r, dict)] if isinstance(results, list) else []
            for record in page:
                user = ap_user(record)
                if user is not None:
                    sides.add_user(user)
            skip += len(page)
            total = found.get("count") if isinstance(found, dict) and isinstance(found.get("count"), int) else None
            self._update(
                read_accessplanit=skip,
                total_accessplanit=total,
                requests=self._requests(System.ACCESSPLANIT),
                eta_s=self._read_eta(started, skip, total, 0),
            )
            await self._emit()
            if len(page) < PAGE:
                return

    async def _read_mailchimp(self, sides: Sides) -> None:
        path = f"/lists/{self._instance.mailchimp.audience_id}/members"
        fields = mailchimp_fields(self._instance)
        started, read = time.monotonic(), 0
        for status in (None, "archived"):  # archived members are listed only when asked for by status
            offset = 0
            while True:
                self._check()
                params: dict[str, Any] = {"count": PAGE, "offset": offset, "fields": fields}
                if status:
                    params["status"] = status
                if self._request.since is not None:
                    params["since_last_changed"] = self._request.since.isoformat()
                reply = await _retrying(
                    functools.partial(self._mc.request, "GET", path, priority=Priority.RECONCILIATION, params=params)
                )
                doc = reply.document if isinstance(reply.document, dict) else {}
                members = [m for m in doc.get("members") or [] if isinstance(m, dict)]
                for item in members:
                    member = mc_member(item, archived=status == "archived")
                    if member is not None:
                        sides.add_member(member)
                offset += len(members)
                read += len(members)
                total = doc.get("total_items") if status is None and isinstance(doc.get("total_items"), int) else None
                self._update(
                    read_mailchimp=read,
                    total_mailchimp=total if total is not None else self.progress.total_mailchimp,
                    requests=self._requests(System.MAILCHIMP),
                    eta_s=self._read_eta(started, read, self.progress.total_mailchimp, 0),
                )
                await self._emit()
                if len(members) < PAGE:
                    break

    async def _read_counterparts(self, sides: Sides) -> None:
        """Incremental run: a contact changed on one side only is compared with its record on the other, read by
        address (one request each; accessplanit's at the run's share of its budget)."""
        audience = self._instance.mailchimp.audience_id
        paths = mailchimp_fields(self._instance).split(",")
        fields = ",".join(p.removeprefix("members.") for p in paths if p.startswith("members."))
        for key in sorted(sides.accessplanit.keys() - sides.mailchimp.keys()):
            self._check()
            email = sides.accessplanit[key][0].email or key
            try:
                reply = await _retrying(
                    functools.partial(
                        self._mc.request,
                        "GET",
                        member_path(audience, email),
                        priority=Priority.RECONCILIATION,
                        params={"fields": fields},
                    )
                )
            except MailchimpError as exc:
                if exc.status != 404:
                    raise
                continue
            finally:
                self._update(requests=self._requests(System.MAILCHIMP))
            doc = reply.document if isinstance(reply.document, dict) else {}
            member = mc_member(doc, archived=doc.get("status") == "archived")
            if member is not None:
                sides.add_member(member)
        for key in sorted(sides.mailchimp.keys() - sides.accessplanit.keys()):
            self._check()
            await self._ap_pace.take("reads", max_wait_s=self._limits.ap_window_s)
            found = await _retrying(
                functools.partial(self._ap.users_by_email, sides.mailchimp[key].email, priority=Priority.RECONCILIATION)
            )
            self._update(requests=self._requests(System.ACCESSPLANIT))
            for record in found:
                user = ap_user(record)
                if user is not None:
                    sides.add_user(user)
            await self._emit()

    # -- comparing and publishing --------------------------------------------------------------------------------

    async def execute(self, save: SaveCheckpoint) -> ReconcileProgress:
        sides = Sides()
        await self._emit(force=True)
        await self._read_accessplanit(sides)
        self._update(phase="reading mailchimp", eta_s=None)
        await self._read_mailchimp(sides)
        if self._request.since is not None:
            self._update(phase="reading counterparts", eta_s=None)
            await self._read_counterparts(sides)
        self._update(phase="comparing", eta_s=None)
        findings = list(classify(self._instance, sides, self._policy, self._pairs))
        del sides
        counts = Counter(f.category.value for f in findings)
        pending = [f for f in findings if f.key > self._after and (f.row is not None)]
        repairs = [f for f in pending if f.repair is not None and self._policy.repair]
        targets = Counter(f.repair.source.other for f in repairs if f.repair is not None)
        writes = writes_eta_s(
            targets,
            ap_requests_per_hour=self._limits.ap_requests_per_window * 3600 / self._limits.ap_window_s,
            mailchimp_members_per_s=self._limits.mailchimp_members_per_s,
        )
        message = None
        if repairs:
            to_ap = targets.get(System.ACCESSPLANIT, 0)
            paced = (
                to_ap * self._limits.ap_window_s / self._ap_users_per_window if to_ap > self._ap_users_per_window else 0
            )
            message = (
                f"{targets.get(System.MAILCHIMP, 0)} repair(s) to Mailchimp, {to_ap} to accessplanit; the pipeline "
                f"needs about {_duration(max(writes, paced))} to write them at the vendors' limits"
            )
            if paced:
                message += (
                    f" (repairs to accessplanit are published at {self._ap_users_per_window} users per "
                    f"{_duration(self._limits.ap_window_s)}, the run's share of its request budget)"
                )
        self._update(
            phase="publishing" if self._policy.repair else "reporting",
            compared=len(findings),
            counts=dict(counts),
            to_publish=len(repairs),
            message=message,
        )
        await self._emit(force=True)
        await self._publish(pending, save)
        for category, count in counts.items():
            RECONCILE_CONTACTS.labels(category).inc(count)
        # Reported by the service once the run's checkpoint is cleared: whoever sees "done" may start the next run.
        self._update(status=RunStatus.DONE, phase="finished", eta_s=0.0)
        return self.progress

    async def _publish(self, pending: list[Finding], save: SaveCheckpoint) -> None:
        """Rows and repairs in address order, checkpointed after every `BATCH` contacts Kafka acknowledged.

        Repairs to accessplanit are paced to the run's share of its budget (a user written there costs two
        requests): published all at once, a large backfill would have the writer's writes wait on the budget until
        they ran out of retries. The run then lasts as long as those writes need, which its ETA says."""
        received = utcnow()
        started, done, since_flush = time.monotonic(), 0, 0
        published = self.progress.published
        remaining_ap = sum(1 for f in pending if self._to_accessplanit(f))
        acks: list[Any] = []

        async def flush(position: str) -> None:
            nonlocal acks, since_flush
            for ack in acks:
                await ack
            acks, since_flush = [], 0
            self._update(published=published, eta_s=self._publish_eta(started, done, len(pending), remaining_ap))
            await self._emit(force=True)
            await save(position, self.progress)

        for finding in pending:
            if since_flush == 0:
                self._check()
            if self._to_accessplanit(finding) and (wait_s := self._ap_writes.try_take("writes")) > 0:
                if done:  # what was published so far is checkpointed before the run waits
                    await flush(pending[done - 1].key)
                while wait_s > 0:
                    self._check()
                    self._update(eta_s=self._publish_eta(started, done, len(pending), remaining_ap))
                    await self._emit(force=True)
                    await asyncio.sleep(min(wait_s, PACING_SLICE_S))
                    wait_s = self._ap_writes.try_take("writes")
            if self._to_accessplanit(finding):
                remaining_ap -= 1
            if finding.row is not None:
                self._rows.append(finding.row)
            if finding.repair is not None and self._policy.repair:
                event = repair_event(
                    self._instance, finding.repair, run_id=self._request.run_id, received_at=received, pairs=self._pairs
                )
                if event is not None:
                    acks.append(await send_envelope(self._producer, change_envelope(event)))
                    RECONCILE_REPAIRS.labels(finding.repair.source.other.value).inc()
                    published += 1
            done += 1
            since_flush += 1
            if since_flush >= BATCH:
                await flush(finding.key)
        if since_flush:
            await flush(pending[-1].key)

    def _to_accessplanit(self, finding: Finding) -> bool:
        repair = finding.repair
        return self._policy.repair and repair is not None and repair.source is System.MAILCHIMP

    def _publish_eta(self, started: float, done: int, total: int, remaining_ap: int) -> float:
        """The paced accessplanit repairs still to come at the run's share, or the rest at the rate so far."""
        rate = done / max(time.monotonic() - started, 1e-6) if done else 0.0
        rest = (total - done) / rate if rate else 0.0
        return max(rest, remaining_ap * self._limits.ap_window_s / self._ap_users_per_window)


async def _retrying(call: Callable[[], Awaitable[T]]) -> T:
    """A read that failed transiently (budget busy with live traffic, a timeout, a 5xx) is tried again after a
    growing pause; a permanent failure, or the last attempt's, fails the run with its reason."""
    pause = 1.0
    for attempt in range(READ_ATTEMPTS):
        try:
            return await call()
        except (AccessplanitError, MailchimpError) as exc:
            if exc.error.permanent or attempt == READ_ATTEMPTS - 1:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, 60.0)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
