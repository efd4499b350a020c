"""A write to an accessplanit user whose delivery waits for the catch-up read (pure).

Beyond an instance's re-read allowance, ingest answers an unsigned accessplanit delivery without reading the user
(`tandem_ingest.catch_up`): the edit becomes an event only when the catch-up poll reads the user, seconds later.
Written over before that read, the edit is lost: the poll then reads Tandem's own value, an echo. So before it
writes a user that is in the instance's deferred set, the writer judges the user as its accessplanit target just
read it (the lookup every write makes, no extra request): a field holding a value Tandem does not know (seen there,
or written by Tandem) is someone's edit not read yet; changed, by the user's `DateUpdated`, not provably before this
command's change, it is the later edit and is left out. The catch-up read carries it to the other side. A field the
user changed provably before this change is written: that edit is older and loses anyway (docs/convergence.md).

The rule is the one a released held change is checked by (`source_check.check_later_edits`), with the command's
own change time and the values of what Tandem knows accessplanit holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from tandem_shared.contracts import CheckedField, SourceCheck, SyncCommand, System
from tandem_shared.sync.rules import SideState, field_digest, payload_content, ts_ms
from tandem_writer.domain.source_check import CheckResult, LaterEditWording, check_later_edits


def _when(moment_ms: int) -> str:
    return datetime.fromtimestamp(moment_ms / 1000, UTC).strftime("%H:%M:%S.%f")[:-3] + " UTC"


def unseen_edit_check(
    command: SyncCommand,
    user: Mapping[str, Any],
    user_id: str,
    known: SideState | None,
    arrived_ms: int,
) -> CheckResult:
    """`command` (to accessplanit) without the fields `user` (as read just before the write, by source field name)
    holds someone's later edit in, that Tandem has not read yet; `known`: what Tandem knows accessplanit holds for
    the contact; `arrived_ms`: when the user's deferred delivery arrived."""
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
    wording = LaterEditWording(
        prefix=(
            f"accessplanit user {user_id} has a delivery waiting for the catch-up read (since {_when(arrived_ms)}), "
            "read before the write"
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
