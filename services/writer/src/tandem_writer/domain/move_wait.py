"""A user to create at an address a Mailchimp profile change names: it may be a known contact's, moving there (pure).

Mailchimp's webhooks carry no member id that survives an address change, and Tandem keys each change by the
address it was about before: a member's `upemail` (old → new) by the old address, its later `profile` change by the
new one. On two partitions, the profile change may be decided first (held while paused and released first, or its
upemail's partition lagging). It then finds no contact at the new address, and its command would create a user
there, beside the user its upemail is about to move there: two users, the sides apart (docs/convergence.md,
"Moves").

So such a command (`SyncCommand.may_precede_move`) creates nothing while it is younger than the move grace: finding
no user at its address, or one Tandem does not know there yet (a move written, its record on its way), it is tried
again shortly. Once the move has landed, the lookup finds the moved user and the change is written to it; after the
grace, a contact really new to accessplanit is created as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tandem_shared.contracts import ErrorInfo, SyncCommand
from tandem_writer.domain.outcome import WriteOutcome

# How long after the mapper decided it such a command waits for a move: the upemail is decided within its
# partition's lag of the profile change (or right after it, on a release), and written about a second later.
MOVE_GRACE_S = 12.0
# Its first wait; each later one is as long as it has waited so far (1, 1, 2, 4, … s): a move landing at once costs
# one lookup more, a contact new to accessplanit a handful within the grace.
FIRST_WAIT_S = 1.0


@dataclass(frozen=True)
class MoveWait:
    """Not written yet: wait `wait_s` for the move, `grace_s` in all since the command was decided."""

    wait_s: float
    grace_s: float

    def outcome(self, why: str) -> WriteOutcome:
        message = (
            f"{why}; this Mailchimp change may have overtaken the address change that moves a known contact there: "
            f"waiting up to {self.grace_s:g} s for it, looked up again in {self.wait_s:.1f} s"
        )
        return WriteOutcome(
            False,
            f"Not written to accessplanit yet: {message}",
            error=ErrorInfo(error_class="MoveAwaited", message=message, permanent=False),
            defer_s=self.wait_s,
        )


def move_wait(command: SyncCommand, now: datetime, grace_s: float) -> MoveWait | None:
    """How long `command` waits before it is tried again (None: it is written now, a user created if none is
    there). The grace runs from the mapper's decision (`created_at`), so a command taken up late waits less."""
    if not command.may_precede_move:
        return None
    waited = max(0.0, (now - command.created_at).total_seconds())
    left = grace_s - waited
    if left <= 0:
        return None
    return MoveWait(min(left, max(FIRST_WAIT_S, waited)), grace_s)


def created_after_waiting(command: SyncCommand, email: str, grace_s: float) -> str:
    """The note a user created after the grace carries in its trace ("" for a command that does not wait)."""
    if not command.may_precede_move or grace_s <= 0:
        return ""
    return (
        f"; no user had {email} {grace_s:g} s after this change was decided, the wait for a Mailchimp address "
        "change to it"
    )
