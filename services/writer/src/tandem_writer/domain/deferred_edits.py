"""A write to an accessplanit user holding an edit Tandem has not read yet (pure).

ingest reads an accessplanit user back after its delivery (0.1 s later), or, beyond an instance's re-read allowance,
answers the delivery without reading and leaves the user to the catch-up poll (`tandem_ingest.catch_up`), seconds
later. Either way the edit becomes an event only when the user is read. Written over before that read, the edit is
lost: the read then finds Tandem's own value, an echo. So before it writes a user updated since the command's
change, the writer judges the user as its accessplanit target just read it (the lookup every write makes, no extra
request): a field holding a value Tandem does not know (seen there, or written by Tandem) is someone's edit not read
yet; changed, by the user's `DateUpdated`, not provably before this command's change, it is the later edit and is
left out. Its own read carries it to the other side. A field the user changed provably before this change is
written: that edit is older and loses anyway (docs/convergence.md).

The rule is the one a released held change is checked by (`source_check.check_later_edits`), with the command's
own change time and the values of what Tandem knows accessplanit holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from tandem_shared.contracts import CheckedField, SourceCheck, SyncCommand, System
from tandem_shared.sync.rules import SideState, field_digest, payload_content, proven_older, ts_ms
from tandem_writer.domain.source_check import CheckResult, LaterEditWording, check_later_edits, record_updated_ms


def _when(moment_ms: int) -> str:
    return datetime.fromtimestamp(moment_ms / 1000, UTC).strftime("%H:%M:%S.%f")[:-3] + " UTC"


def updated_since(command: SyncCommand, user: Mapping[str, Any]) -> bool:
    """Whether `user` may hold an edit later than the command's change: its `DateUpdated` is not provably before
    it (or unknown). Only then can `unseen_edit_check` leave anything out, so only then is it worth its state read."""
    updated = record_updated_ms(System.ACCESSPLANIT, user)
    return updated is None or not proven_older(System.ACCESSPLANIT, updated, ts_ms(command.source_occurred_at))


def unseen_edit_check(
    command: SyncCommand,
    user: Mapping[str, Any],
    user_id: str,
    known: SideState | None,
    arrived_ms: int | None,
) -> CheckResult:
    """`command` (to accessplanit) without the fields `user` (as read just before the write, by source field name)
    holds someone's later edit in, that Tandem has not read yet; `known`: what Tandem knows accessplanit holds for
    the contact; `arrived_ms`: when the user's deferred delivery arrived (None: no delivery of it is deferred; its
    edit's delivery is on its way, or being read back)."""
    change_ms = ts_ms(command.source_occurred_at)
    fields = {
        name: CheckedField(
            source_field=name, digest=field_digest(value), raced=known.known_digests(name) if known else []
        )
        for name, value in payload_content(command.target, command.payload).items()
    }
    if not fields:
        return CheckResult(command)
    spec = SourceCheck(
        system=System.ACCESSPLANIT,
        email=command.identity.email or "",
        fields=fields,
        ts_ms=change_ms,
        held_change_ms=change_ms,
    )
    if arrived_ms is None:
        wording = LaterEditWording(
            prefix=f"accessplanit user {user_id}, looked up before the write, was updated since this change",
            change="this change",
            carried_by="its own delivery",
        )
    else:
        wording = LaterEditWording(
            prefix=(
                f"accessplanit user {user_id} has a delivery waiting for the catch-up read (since "
                f"{_when(arrived_ms)}), read before the write"
            ),
            change="this change",
            carried_by="the catch-up read",
        )
    return check_later_edits(command, spec, user, wording)


def _release_recheck_wording() -> LaterEditWording:
    return LaterEditWording(
        "Looked accessplanit up again just before writing a released held change", "this held change", "its own event"
    )


def release_recheck(command: SyncCommand, user: Mapping[str, Any]) -> CheckResult:
    """A released held change (`SourceCheck.held_change_ms`), judged again on the user as looked up just before the
    write: an edit made since the writer's authoritative read is left out as that read would have (the gap left is
    the one between this lookup and the write itself; accessplanit has no conditional write). Silent when nothing
    new is left out."""
    spec = command.source_check
    if spec is None or spec.held_change_ms is None or spec.system is not System.ACCESSPLANIT:
        return CheckResult(command)
    still = payload_content(command.target, command.payload)
    fields = {name: checked for name, checked in spec.fields.items() if name in still}
    if not fields:
        return CheckResult(command)
    result = check_later_edits(command, spec.model_copy(update={"fields": fields}), user, _release_recheck_wording())
    return result if result.command is not command else CheckResult(command)
