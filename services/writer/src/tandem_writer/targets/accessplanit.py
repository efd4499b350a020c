"""accessplanit target: Mailchimp contacts as accessplanit Users, found by email, created in the default account.

Safe to repeat: every write looks the user up first, so a command retried after a crash between the create and the
commit finds the user it created and updates it instead of creating a second one. The lookup-then-write of one
contact is never concurrent with another for that contact, because the command's Kafka key keeps a contact on one
partition, consumed in order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol

from redis.asyncio import Redis

from tandem_shared.contracts import ErrorInfo, InstanceConfig, Operation, SyncCommand, System, utcnow
from tandem_shared.logging import get_logger
from tandem_shared.sync.rules import SideState
from tandem_shared.vendors.accessplanit.bodies import changed_fields, create_body, desired_fields
from tandem_shared.vendors.accessplanit.client import AccessplanitClient, AccessplanitClients, AccessplanitError
from tandem_shared.vendors.accessplanit.settings import AccessplanitSettings
from tandem_shared.vendors.priority import Priority
from tandem_writer.deferred_edits import UnseenEdits
from tandem_writer.domain.accessplanit_plan import DELETED, Match, choose_user, moved_away
from tandem_writer.domain.move_wait import MOVE_GRACE_S, created_after_waiting, move_wait
from tandem_writer.domain.outcome import WriteOutcome

log = get_logger("tandem.writer.accessplanit")

# Every call the writer makes carries a change being synced now, its look-ups included.
LIVE = Priority.LIVE


def _failure(summary: str, error: ErrorInfo) -> WriteOutcome:
    return WriteOutcome(False, summary, error=error)


class KnownSides(Protocol):
    async def side(self, instance_id: str, system: System, email: str) -> SideState | None:
        """What Tandem knows `system` holds for `email` (None: nothing)."""
        ...


class AccessplanitTarget:
    system = System.ACCESSPLANIT

    def __init__(
        self,
        clients: AccessplanitClients,
        unseen: UnseenEdits | None = None,
        *,
        sides: KnownSides | None = None,
        move_grace_s: float = MOVE_GRACE_S,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """`unseen`: asked before updating a user whether it holds an edit Tandem has not read yet
        (`deferred_edits`); without it, the lookup's user is written as found. `sides` and `move_grace_s`: a
        command that may precede a move (`domain.move_wait`) waits up to `move_grace_s` for a user Tandem knows at
        its address; without `sides`, for any user there."""
        self._clients = clients
        self._unseen = unseen
        self._sides = sides
        self._move_grace_s = move_grace_s
        self._clock = clock

    @classmethod
    def from_settings(
        cls,
        redis: Redis,
        settings: AccessplanitSettings,
        unseen: UnseenEdits | None = None,
        *,
        sides: KnownSides | None = None,
        move_grace_s: float = MOVE_GRACE_S,
    ) -> AccessplanitTarget:
        """On the writer's Redis client (the request budget), which the writer closes itself."""
        return cls(AccessplanitClients(redis, settings), unseen, sides=sides, move_grace_s=move_grace_s)

    @property
    def clients(self) -> AccessplanitClients:
        """Shared with reconciliation runs, so their reads and these writes pay from one budget behind one gate."""
        return self._clients

    async def close(self) -> None:
        await self._clients.close()

    async def write(self, command: SyncCommand, instance: InstanceConfig) -> WriteOutcome:
        try:
            client = self._clients.for_instance(instance)
            if command.operation is Operation.CHANGE_EMAIL:
                return await self._change_email(client, command, instance)
            return await self._upsert(client, command, instance)
        except AccessplanitError as exc:
            return _failure(f"accessplanit refused or failed the write: {exc.error.message}", exc.error)

    async def _find(self, client: AccessplanitClient, command: SyncCommand, email: str | None) -> Match:
        user_id = command.identity.accessplanit_user_id
        if user_id:
            user = await client.get_user(user_id, priority=LIVE)
            if user is not None and user.get("Status") != DELETED:
                return Match(user)
        if not email:
            return Match(None)
        return choose_user(await client.users_by_email(email, priority=LIVE))

    async def _upsert(self, client: AccessplanitClient, command: SyncCommand, instance: InstanceConfig) -> WriteOutcome:
        email = _text(command.payload.get("Email")) or command.identity.email
        if not email:
            return _failure(
                "Not written to accessplanit: the contact has no email address",
                ErrorInfo(
                    error_class="MissingEmail",
                    message="The contact has no email address",
                    permanent=True,
                    field="Email",
                ),
            )
        match = await self._find(client, command, email)
        if match.user is None and not match.deleted and command.target_user_id:
            moved = await self._moved(client, command, instance, email)
            if moved is not None:
                return moved
        waiting = await self._awaiting_move(command, match, email)
        if waiting is not None:
            return waiting
        note = created_after_waiting(command, email, self._move_grace_s) if match.user is None else ""
        return await self._apply(client, command, instance, match, email, note=note)

    async def _awaiting_move(self, command: SyncCommand, match: Match, email: str) -> WriteOutcome | None:
        """A command that may precede a move (`domain.move_wait`), within the grace: not written while no user is
        at its address, nor while the user there is one Tandem does not know at it (a move landing, its record on
        its way: written before that, the change would be judged against knowledge of no one there)."""
        wait = move_wait(command, self._clock(), self._move_grace_s)
        if wait is None or (match.user is None and match.deleted):
            return None
        if match.user is None:
            return wait.outcome(f"no user has {email}")
        if self._sides is None:
            return None
        known = await self._sides.side(command.instance_id, System.ACCESSPLANIT, email)
        if known is not None and known.fields:
            return None
        return wait.outcome(f"accessplanit user {match.user.get('ID')} has {email}, where Tandem knows no contact yet")

    async def _moved(
        self, client: AccessplanitClient, command: SyncCommand, instance: InstanceConfig, email: str
    ) -> WriteOutcome | None:
        """No user has the address, but Tandem saw user `target_user_id` there: when accessplanit has moved that user
        to another address meanwhile (its email change on its way to Mailchimp), the change is that user's. Its
        fields are written there, its address left as it is; the write is recorded at that address."""
        assert command.target_user_id is not None
        user = await client.get_user(command.target_user_id, priority=LIVE)
        if user is None or not moved_away(user, email):
            return None
        new = str(user["Email"]).strip()
        note = f"; no user has {email} any more: accessplanit moved user {user.get('ID')} to {new} meanwhile"
        outcome = await self._apply(client, command, instance, Match(user), new, note=note)
        if not outcome.ok or not outcome.wrote:
            return outcome
        # What was written (less than the command when a check left fields out), at the user's address.
        base = outcome.written or command
        written = base.model_copy(
            update={
                "payload": {**base.payload, "Email": new},
                "identity": base.identity.model_copy(update={"email": new}),
            }
        )
        return replace(outcome, written=written)

    async def _change_email(
        self, client: AccessplanitClient, command: SyncCommand, instance: InstanceConfig
    ) -> WriteOutcome:
        old, new = command.identity.old_email, command.identity.email or _text(command.payload.get("Email"))
        if not new:
            return _failure(
                "Email change not written to accessplanit: the new address is missing",
                ErrorInfo(
                    error_class="MissingEmail",
                    message="An email change without the new address",
                    permanent=True,
                    field="Email",
                ),
            )
        match = await self._find(client, command, old)
        note = ""
        if match.user is None and old and not match.deleted and command.target_user_id:
            skipped = await self._moved_since(client, command, old, new)
            if skipped is not None:
                return skipped
        if match.user is None:
            # Either this change was applied already (a retry after a crash) or the contact never reached
            # accessplanit: in both cases the user to write is the one with the new address, if any.
            match = await self._find(client, command, new)
            if old:
                found = "so the user with the new address was written" if match.user else "nor the new one"
                note = f"; no user had the old address {old}, {found}"
        return await self._apply(client, command, instance, match, new, note=note)

    async def _moved_since(
        self, client: AccessplanitClient, command: SyncCommand, old: str, new: str
    ) -> WriteOutcome | None:
        """An address change from `old` finds no user there, but Tandem saw user `target_user_id` there: when
        accessplanit has moved that user to a third address meanwhile, both sides changed the address at once, and
        accessplanit's change, received after this one, wins (docs/convergence.md, "Moves"): nothing is written."""
        assert command.target_user_id is not None
        user = await client.get_user(command.target_user_id, priority=LIVE)
        if user is None or not moved_away(user, old) or not moved_away(user, new):
            return None
        return WriteOutcome(
            True,
            f"Not written to accessplanit: no user has {old} any more: accessplanit moved user {user.get('ID')} to "
            f"{str(user['Email']).strip()} meanwhile, an address change received after this one, which wins",
            response=user,
            wrote=False,
        )

    async def _apply(
        self,
        client: AccessplanitClient,
        command: SyncCommand,
        instance: InstanceConfig,
        match: Match,
        email: str,
        *,
        note: str = "",
    ) -> WriteOutcome:
        desired = desired_fields(command.payload)
        fields = {**desired.fields, "Email": email}
        notes = note
        if desired.ignored:
            notes += f"; not written (Tandem never writes them): {', '.join(desired.ignored)}"
        if match.user is None:
            if match.deleted:
                ids = ", ".join(match.deleted)
                return _failure(
                    f"Not written to accessplanit: the only user with {email} is deleted ({ids})",
                    ErrorInfo(
                        error_class="UserDeleted",
                        message=(
                            f"accessplanit user {ids} with the address {email} is deleted; restore it in accessplanit "
                            "or remove the contact from the audience, then replay"
                        ),
                        permanent=True,
                        field="Status",
                    ),
                )
            body = create_body(fields, email=email, default_account_id=instance.accessplanit.default_account_id)
            if isinstance(body, ErrorInfo):
                return _failure(f"Not written to accessplanit: {body.message}", body)
            created = await client.create_user(body, priority=LIVE)
            return WriteOutcome(
                True,
                f"Created accessplanit user {created.get('ID')} ({email}) in account {body['MainCompanyID']}{notes}",
                response=created,
            )
        user = match.user
        user_id = str(user.get("ID"))
        written: SyncCommand | None = None
        if self._unseen is not None:
            # On the user just looked up: an edit of it not read yet (its delivery deferred to the catch-up read)
            # would be lost under this write.
            unseen = await self._unseen.check(command, instance, user)
            if unseen.command is None:
                why = "; ".join(unseen.logs)
                return WriteOutcome(True, f"Not written to accessplanit: {why}{notes}", written=None, wrote=False)
            if unseen.logs:
                notes += f"; {'; '.join(unseen.logs)}"
            if unseen.command is not command:
                written = unseen.command
                desired = desired_fields(written.payload)
                fields = {**desired.fields, "Email": email}
        if match.ambiguous:
            notes += (
                f"; {len(match.others) + 1} active users have this address ({', '.join([user_id, *match.others])}): "
                f"wrote to {user_id}, the most recently updated"
            )
            log.warning(
                "several accessplanit users share an address",
                instance_id=command.instance_id,
                execution_id=command.execution_id,
                chosen=user_id,
                others=list(match.others),
            )
        changes = changed_fields(user, fields)
        if not changes:
            return WriteOutcome(
                True,
                f"accessplanit user {user_id} ({email}) is already up to date{notes}",
                response=user,
                written=written,
            )
        updated = await client.update_user(user_id, changes, priority=LIVE)
        changed = [f"Email (was {user.get('Email')})" if k == "Email" else k for k in sorted(changes)]
        return WriteOutcome(
            True,
            f"Updated accessplanit user {user_id} ({email}): {', '.join(changed)}{notes}",
            response=updated,
            written=written,
        )


def _text(value: Any) -> str | None:
    text = "" if value is None else str(value).strip()
    return text or None
