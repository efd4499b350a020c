"""What a decision is made from and what it leaves (pure): the contact's known state, the decision, its updates."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tandem_shared.contracts import ChangeEvent, ChangeKind, ErrorInfo, SyncCommand, System, TraceStatus, email_key
from tandem_shared.sync.rules import SideState


@dataclass(frozen=True)
class Knowledge:
    """What Tandem knows about the contact, at its current address and (on an email change) its previous one."""

    source: SideState | None = None
    target: SideState | None = None
    source_old: SideState | None = None
    target_old: SideState | None = None
    # accessplanit: the address last seen for this user id.
    previous_email: str | None = None
    # Where the target holds the contact instead of the change's address (old address), when it refused to move it
    # there: `target` (`target_old`) is then the state at that address.
    target_at: str | None = None
    target_old_at: str | None = None
    # Where the target moved the contact to from the change's address, which it no longer holds (a change still
    # naming the old address, made or decided while the move was on its way): `target` is the state there.
    target_moved_to: str | None = None
    # On an email change: where the target moved the contact to from the old address by a move of its own, received
    # before this one (both sides changed the address at once): `target_old` is the state there.
    target_old_moved_to: str | None = None
    # When the target's own move happened (its clock), if known: two moves that the clocks order are decided by them.
    target_old_moved_at: int | None = None


@dataclass(frozen=True)
class MergeSeen:
    system: System
    email: str
    digests: dict[str, str]
    source_ts_ms: int


@dataclass(frozen=True)
class MoveState:
    system: System
    old_email: str
    new_email: str
    moved_ms: int  # when the change that moved it happened, by its source's clock


@dataclass(frozen=True)
class RememberUserEmail:
    user_id: str
    email: str


@dataclass(frozen=True)
class HoldAt:
    """`system` holds the contact it would hold at `email` at `held_at` instead (it refused to move it there);
    re-stated whenever a change is written through it, so it lives as long as the contact's own state."""

    system: System
    email: str
    held_at: str


StateUpdate = MergeSeen | MoveState | RememberUserEmail | HoldAt


@dataclass(frozen=True)
class Decision:
    status: TraceStatus
    summary: str
    command: SyncCommand | None = None
    # The source's own later value, written back over an older one Tandem may have written there meanwhile.
    repair: SyncCommand | None = None
    error: ErrorInfo | None = None
    changes_detected: bool | None = None
    logs: list[str] = field(default_factory=list)
    updates: list[StateUpdate] = field(default_factory=list)


def event_email(event: ChangeEvent) -> str | None:
    """The contact's current address: the identity in both systems."""
    if event.source is System.ACCESSPLANIT:
        value: Any = event.fields.get("Email", event.identity.email)
    else:
        value = event.identity.email or event.fields.get("EMAIL")
    return value.strip() if isinstance(value, str) and value.strip() else None


def old_address(event: ChangeEvent, previous_email: str | None) -> str | None:
    """The address the contact had before this change, when this change moved it to a new one."""
    email = event_email(event)
    if email is None:
        return None
    if event.source is System.ACCESSPLANIT:
        candidate = previous_email
    elif event.kind is ChangeKind.EMAIL_CHANGED:
        candidate = event.identity.old_email
    else:
        candidate = None
    if candidate and email_key(candidate) != email_key(email):
        return candidate
    return None
