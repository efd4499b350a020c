"""Before a write to an accessplanit user: does it hold an edit Tandem has not read? (`domain.deferred_edits`)

The accessplanit target asks this with the user it has just looked up for the write, so the check costs no request
to accessplanit. Only a user updated since the command's change (its `DateUpdated` not provably before it) is
judged, with one Redis read of the instance's deferred set (`tandem_shared.redis.deferred`, for the wording) and
one of what Tandem knows accessplanit holds for the contact: an edit whose delivery waits for the catch-up read, or
is on its way or being read back by ingest, would be lost under the write (that read would find Tandem's value). A
released held change is judged again on the same lookup, closer to the write than the authoritative read it was
checked by.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Protocol

from tandem_shared.contracts import InstanceConfig, Operation, SyncCommand, System
from tandem_shared.redis.deferred import DeferredDeliveries
from tandem_shared.redis.state import StateStore
from tandem_shared.sync.rules import payload_email
from tandem_writer.domain.deferred_edits import release_recheck, unseen_edit_check, updated_since
from tandem_writer.domain.source_check import CheckResult
from tandem_writer.source_check import user_fields


class UnseenEdits(Protocol):
    async def check(self, command: SyncCommand, instance: InstanceConfig, user: Mapping[str, Any]) -> CheckResult:
        """`command` as it may be written over `user` (accessplanit's record, just read): without the fields
        holding an edit Tandem has not read yet that is later than the command's change (None: nothing left)."""
        ...


class UnseenEditGuard:
    def __init__(self, deferred: DeferredDeliveries, state: StateStore) -> None:
        self._deferred = deferred
        self._state = state

    async def check(self, command: SyncCommand, instance: InstanceConfig, user: Mapping[str, Any]) -> CheckResult:
        values = user_fields(user)
        released = release_recheck(command, values)
        if released.command is None:
            return released
        user_id = str(user.get("ID"))
        command = released.command
        if not updated_since(command, values):
            return released  # nothing there is later than this change: no state read needed
        # Deferred to the catch-up read, or on its way (a write between an edit and ingest's read-back of it would
        # make that read find Tandem's value): either way an edit Tandem has not read, which the write must not lose.
        arrived = await self._deferred.arrived_ms(command.instance_id, user_id)
        # What Tandem knows accessplanit holds is kept under the address it holds the contact at: before an email
        # change is written, the old one.
        moving = command.operation is Operation.CHANGE_EMAIL and command.identity.old_email
        email = command.identity.old_email if moving else payload_email(command.target, command.payload)
        email = email or command.identity.email
        known = None
        if email:
            snapshot = await self._state.load_many([(command.instance_id, System.ACCESSPLANIT, email)])
            known = snapshot.side(command.instance_id, System.ACCESSPLANIT, email)
        deferred = unseen_edit_check(command, values, user_id, known, arrived)
        return replace(deferred, logs=[*released.logs, *deferred.logs])
