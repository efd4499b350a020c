"""An email change Mailchimp refused (pure): which address each side now holds, and what the trace says.

Mailchimp changes the address of subscribed members only (`targets.mailchimp`); Tandem then never creates a member
at the new address (that would subscribe a contact who opted out). The contact stays at two addresses — the new one
in accessplanit, the old one in Mailchimp — and is judged on those: the writer records each side's address in the
other's state (`StateTransaction.hold_at`), so the mapper writes the contact's later changes between them instead of
creating a member (or a user) at the address the other side has. The fields the refused change carried are
written to the member where Mailchimp kept it (an upsert there, as any later change of the contact is), so the two
addresses hold the same values at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from tandem_shared.contracts import ErrorInfo, Operation, SyncCommand, System
from tandem_shared.sync.rules import payload_email

REFUSED = "EmailChangeRefused"


@dataclass(frozen=True)
class RefusedMove:
    accessplanit_email: str  # where accessplanit holds the contact (the change's new address)
    mailchimp_email: str  # where Mailchimp keeps it (the old address)
    summary: str


def refused_move(command: SyncCommand, error: ErrorInfo | None) -> RefusedMove | None:
    """The refused move a Mailchimp write's error reports, or None for any other outcome."""
    if error is None or error.error_class != REFUSED or command.target is not System.MAILCHIMP:
        return None
    new = payload_email(command.target, command.payload) or command.identity.email
    old = command.identity.old_email
    if command.operation is not Operation.CHANGE_EMAIL or not new or not old:
        return None
    summary = (
        f"Not moved: accessplanit holds this contact at {new}, Mailchimp keeps it at {old}, because Mailchimp "
        f"refused the address change ({error.message}). Its later changes are synced between these two addresses"
    )
    return RefusedMove(new, old, summary)


def kept_member_write(command: SyncCommand, move: RefusedMove) -> SyncCommand | None:
    """The refused change's fields as an upsert of the member at the address Mailchimp kept (None: no fields)."""
    merges = command.payload.get("merge_fields")
    if not merges:
        return None
    identity = command.identity.model_copy(update={"email": move.mailchimp_email, "old_email": None})
    payload = {**command.payload, "email_address": move.mailchimp_email}
    return command.model_copy(update={"operation": Operation.UPSERT, "identity": identity, "payload": payload})


def with_fields(move: RefusedMove, command: SyncCommand, written: bool, detail: str) -> str:
    """The refusal's account, with what became of the fields it carried (`detail`: the write's summary)."""
    names = ", ".join(sorted(command.payload.get("merge_fields") or {}))
    if written:
        return f"{move.summary}; {names} written to the member at {move.mailchimp_email}"
    return f"{move.summary}; {names} not written to the member at {move.mailchimp_email} either ({detail})"
