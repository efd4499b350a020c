"""What becomes of one command (pure): applied, already applied, superseded, deferred, retried, dead-lettered or
skipped — as a `Verdict` the service carries out and traces.

Each function answers one question the service asks on its way through a delivery; none does I/O or reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from tandem_shared.contracts import ErrorInfo, SyncCommand, System, TraceStatus
from tandem_writer.domain.outcome import WriteOutcome
from tandem_writer.domain.retry import Hop, RetryPolicy

# Added to another writer's remaining claim time before trying again, so the claim has surely expired.
CLAIM_MARGIN_S = 1.0
# A claim is held for one write (milliseconds; a vendor's timeouts at worst) unless its writer died mid-write, and
# only then lasts its whole TTL. So a command finding its contact busy looks again once the claim is twice as old
# (at least this much later), rather than after the TTL: a retry tier's command meeting the contact's next write
# from the main topic, its due time that write's turn, does not wait minutes for a claim gone in milliseconds.
BUSY_RECHECK_S = 1.0


class Disposition(StrEnum):
    APPLIED = "applied"
    ALREADY_APPLIED = "already_applied"
    SUPERSEDED = "superseded"
    RETRY_PENDING = "retry_pending"
    DEFERRED = "deferred"
    DEAD_LETTERED = "dead_lettered"
    IGNORED = "ignored"


@dataclass(frozen=True)
class Verdict:
    """The outcome of one delivery: where the command goes next (`retry`, `dead_letter`) and its trace record."""

    disposition: Disposition
    status: TraceStatus
    summary: str
    data_in: dict[str, Any] | None = None
    data_out: dict[str, Any] | None = None
    error: ErrorInfo | None = None
    changes_detected: bool | None = None
    retry: Hop | None = None  # forward the command to this retry tier
    dead_letter: bool = False  # forward the record to the dead-letter topic


def delivery_over(verdict: Verdict) -> bool:
    """Whether nothing more of the command will be written: it is not on its way to a retry tier (a deferral
    included). Its pending marks that no write recorded are then stale (`tandem_shared.sync.rules.abandoned_marks`)."""
    return verdict.retry is None


def when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def unknown_instance(why: str) -> Verdict:
    """The command's instance is not in the registry: nothing is written. `why` tells a deleted instance from one
    never known (`tandem_shared.instances.missing_instance`)."""
    return Verdict(Disposition.IGNORED, TraceStatus.SKIPPED, why)


def no_writer(target: System) -> Verdict:
    return Verdict(Disposition.IGNORED, TraceStatus.SKIPPED, f"No writer for {target.label} yet")


def already_applied(command: SyncCommand, applied_at: datetime | None) -> Verdict:
    at = f" at {when(applied_at)}" if applied_at else ""
    return Verdict(
        Disposition.ALREADY_APPLIED,
        TraceStatus.SKIPPED,
        f"Skipped: already applied{at} (idempotency key {command.idempotency_key[:12]}…)",
        data_in=command.payload,
        changes_detected=False,
    )


def busy_wait_s(left_s: float, held_s: float) -> float:
    """How long a command waits for a claim held `held_s` so far and expiring in `left_s` at the latest: until the
    claim is twice as old (`BUSY_RECHECK_S` at least), or, when that is later, until it has surely expired."""
    recheck = max(BUSY_RECHECK_S, held_s)
    return recheck if recheck < left_s else left_s + CLAIM_MARGIN_S


def contact_busy(command: SyncCommand, policy: RetryPolicy, left_s: float, held_s: float, now: datetime) -> Verdict:
    """Another write for the contact holds its lock: the same attempt again once that write has likely finished
    (`busy_wait_s`)."""
    hop = policy.deferral(command.attempt, busy_wait_s(left_s, held_s), now)
    error = ErrorInfo(
        error_class="ContactBusy",
        message="Another write for this contact is in flight (or its writer stopped mid-write)",
        permanent=False,
    )
    return Verdict(
        Disposition.DEFERRED,
        TraceStatus.RETRY_PENDING,
        f"Retry pending (attempt {hop.attempt} of {policy.max_attempts}, next at {when(hop.not_before)}): another "
        "write for this contact is in flight",
        data_in=command.payload,
        error=error,
        retry=hop,
    )


def superseded(command: SyncCommand, last_applied: datetime | None) -> Verdict | None:
    """A command older than the newest change applied to its contact is dropped; None: it is to be written."""
    if last_applied is None or command.source_occurred_at >= last_applied:
        return None
    return Verdict(
        Disposition.SUPERSEDED,
        TraceStatus.SKIPPED,
        f"Superseded: a newer change to this contact (from {when(last_applied)}) was applied already; this one "
        f"(from {when(command.source_occurred_at)}) is not written",
        data_in=command.payload,
        changes_detected=False,
    )


def after_write(command: SyncCommand, outcome: WriteOutcome, policy: RetryPolicy, now: datetime) -> Verdict:
    """Applied; or, having failed, on to the next retry tier — or the dead-letter topic when the error is permanent
    or the attempts are used up."""
    if outcome.ok:
        return Verdict(
            Disposition.APPLIED,
            TraceStatus.SUCCEEDED,
            outcome.summary,
            data_in=command.payload,
            data_out=outcome.response,
            changes_detected=True,
        )
    error = outcome.error or ErrorInfo(error_class="WriteFailed", message=outcome.summary, permanent=False)
    if outcome.defer_s is not None:
        hop = policy.deferral(command.attempt, outcome.defer_s, now)
        return Verdict(
            Disposition.DEFERRED,
            TraceStatus.RETRY_PENDING,
            f"Retry pending (attempt {hop.attempt} of {policy.max_attempts}, next at {when(hop.not_before)}): "
            f"{outcome.summary}",
            data_in=command.payload,
            error=error,
            retry=hop,
        )
    retry = None if error.permanent else policy.after_failure(command.attempt, now)
    if retry is None:
        reason = (
            "permanent error, not retried"
            if error.permanent
            else f"gave up after {command.attempt} of {policy.max_attempts} attempts"
        )
        return Verdict(
            Disposition.DEAD_LETTERED,
            TraceStatus.DEAD_LETTERED,
            f"Dead-lettered ({reason}): {error.message}",
            data_in=command.payload,
            data_out=outcome.response,
            error=error,
            dead_letter=True,
        )
    return Verdict(
        Disposition.RETRY_PENDING,
        TraceStatus.RETRY_PENDING,
        f"Retry pending (attempt {retry.attempt} of {policy.max_attempts}, next at {when(retry.not_before)}): "
        f"{error.message}",
        data_in=command.payload,
        data_out=outcome.response,
        error=error,
        retry=retry,
    )


def target_raised(command: SyncCommand, exc: Exception) -> WriteOutcome:
    """A target bug must not stop the partition: it counts as a transient failure (retried, then dead-lettered)."""
    message = f"{command.target.label} write failed: {exc or type(exc).__name__}"
    return WriteOutcome(
        False, message, error=ErrorInfo(error_class=type(exc).__name__, message=message, permanent=False)
    )


def unreadable(exc: ValidationError) -> Verdict:
    """A record that is not a SyncCommand goes to the dead-letter topic as it came."""
    error = ErrorInfo(
        error_class="InvalidCommand",
        message=f"Not a valid SyncCommand: {exc.error_count()} error(s), first: {exc.errors()[0]['msg']}",
        permanent=True,
    )
    return Verdict(
        Disposition.DEAD_LETTERED,
        TraceStatus.DEAD_LETTERED,
        f"Dead-lettered: {error.message}",
        error=error,
        dead_letter=True,
    )


def poisoned(command: SyncCommand, reason: str) -> Verdict:
    """A command a delivery step failed on because of its own data: to the dead-letter topic with the reason,
    rather than repeated for ever in front of every record behind it."""
    error = ErrorInfo(error_class="PoisonRecord", message=reason, permanent=True)
    return Verdict(
        Disposition.DEAD_LETTERED,
        TraceStatus.DEAD_LETTERED,
        f"Dead-lettered: {reason}",
        data_in=command.payload,
        error=error,
        dead_letter=True,
    )


def coalesced_into(command: SyncCommand, into: SyncCommand, disposition: Disposition) -> Verdict:
    """An earlier command whose fields the newest one carried in its write (`tandem_writer.domain.coalescing`)."""
    return Verdict(
        disposition,
        TraceStatus.SKIPPED,
        f"Superseded by a newer change to this contact, written together with it in one write (execution "
        f"{into.execution_id}: {disposition.value.replace('_', ' ')})",
        data_in=command.payload,
        changes_detected=True,
    )
