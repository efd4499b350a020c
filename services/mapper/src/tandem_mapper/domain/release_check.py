"""The check a held change's command carries when it is released after a resume (pure).

A held change is old by construction: while it waited, someone may have edited the same field on the target, and
that edit's event may not have reached Tandem yet (an accessplanit webhook retried later, say). Written over, the
edit is lost: accessplanit's delivery is read back after the write, and what it reads is Tandem's own value. So
the command is checked on its target first (`SourceCheck.held_change_ms`, `tandem_writer.domain.source_check`):
the writer reads the target and leaves out every field that holds a value Tandem does not know, changed not
provably before the held change; that later edit's own event carries it (docs/convergence.md).

Not a command that may precede a move (`SyncCommand.may_precede_move`): see `with_release_check`.

accessplanit targets only: a Mailchimp edit's webhook carries its own value, so a release written over it is
repaired when that webhook arrives (the repair of `decision`), without a read per released change.
"""

from __future__ import annotations

from tandem_mapper.domain.model import Knowledge
from tandem_shared.contracts import CheckedField, Operation, SourceCheck, SyncCommand, System
from tandem_shared.sync.rules import field_digest, payload_content, payload_email, ts_ms


def with_release_check(command: SyncCommand, known: Knowledge) -> SyncCommand:
    """`command`, decided for a held change being released, with the check of its target (unchanged when it
    already carries a check, or writes no mapped field, or goes to Mailchimp)."""
    if command.target is not System.ACCESSPLANIT or command.source_check is not None:
        return command
    if command.may_precede_move:
        # Tandem knows no contact at its address: what the check would name as known there is nothing, so a user
        # moved there meanwhile (the address change this change may have overtaken) would be taken for someone's
        # later edit and left as it is. The writer judges the user its lookup finds, with what Tandem knows once it
        # writes (`tandem_writer.deferred_edits`): an unseen later edit is left out all the same.
        return command
    content = payload_content(command.target, command.payload)
    if not content:
        return command
    moving = command.operation is Operation.CHANGE_EMAIL and command.identity.old_email
    state = known.target_old if moving else known.target
    email = command.identity.old_email if moving else payload_email(command.target, command.payload)
    email = email or command.identity.email
    if email is None:
        return command
    held_ms = ts_ms(command.source_occurred_at)
    fields = {
        name: CheckedField(
            source_field=name, digest=field_digest(value), raced=state.known_digests(name) if state else []
        )
        for name, value in content.items()
    }
    check = SourceCheck(system=command.target, email=email, fields=fields, ts_ms=held_ms, held_change_ms=held_ms)
    return command.model_copy(update={"source_check": check})
