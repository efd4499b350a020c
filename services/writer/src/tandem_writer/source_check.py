"""Authoritative reads before a checked write: the writer holds the vendor credentials, so it reads the source.

`SourceCheckedTarget` stands in front of a target. A command without a `source_check` passes straight through; one
with it first reads the contact from the source (a Mailchimp member or an accessplanit user, priority
AUTHORITATIVE_READ of that vendor's budget: after live writes, before reconciliation) and writes only the fields the
source still holds (`domain.source_check`). What the read found for the others is recorded as the source's value, so
the mapper's knowledge matches the source. A repair is read from its own target, once the write it raced has
landed, and written back only where that write landed over the change.

It also keeps a repair in order: a command whose `waits_for` names Tandem's own writes to the same target still in
flight when the mapper decided (made from the other side, on another partition) is written only once those have
landed (the writer records them: their pending marks go), since it repairs the change they overwrite.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Protocol

from tandem_shared.contracts import ErrorInfo, InstanceConfig, SourceCheck, SyncCommand, System, utcnow
from tandem_shared.contracts.instances import CUSTOM_FIELD_PREFIX
from tandem_shared.redis.state import StateStore
from tandem_shared.sync.rules import payload_email
from tandem_shared.vendors.accessplanit.client import AccessplanitClients, AccessplanitError
from tandem_shared.vendors.mailchimp.client import MailchimpClients, MailchimpError, member_path
from tandem_shared.vendors.priority import Priority
from tandem_writer.domain.accessplanit_plan import choose_user
from tandem_writer.domain.outcome import WriteOutcome
from tandem_writer.domain.source_check import CheckResult, check, later_on_target, needs_target_check
from tandem_writer.side_reads import SideReads
from tandem_writer.targets.base import Target

# How long a repair waits in place for the write it follows to land (usually well under a second); still pending
# after that (a slow write, or one on a retry tier), the repair is deferred and tried again as long as the mark
# counts (IN_FLIGHT_MS after its write was decided). The writer clears the marks of writes that will never land.
LAND_WAIT_S = 1.0
IN_FLIGHT_MS = 10_000
# How a write's summary says it waited the whole LAND_WAIT_S in vain (the soak counts these).
STALE_WAIT = "still in flight after"


class SourceReadFailed(Exception):
    def __init__(self, error: ErrorInfo) -> None:
        super().__init__(error.message)
        self.error = error


class SourceReader(Protocol):
    system: System

    async def read(self, instance: InstanceConfig, spec: SourceCheck, user_id: str | None) -> Mapping[str, Any] | None:
        """The fields of the contact `spec` names (`user_id`: the accessplanit user the change is about, when
        known), by source field name (None: no such contact); SourceReadFailed otherwise."""
        ...


class MailchimpMemberReader:
    system = System.MAILCHIMP

    def __init__(self, clients: MailchimpClients) -> None:
        self._clients = clients

    async def read(self, instance: InstanceConfig, spec: SourceCheck, user_id: str | None) -> Mapping[str, Any] | None:
        email = spec.email
        try:
            client = self._clients.for_instance(instance)
            reply = await client.request(
                "GET",
                member_path(instance.mailchimp.audience_id, email),
                priority=Priority.AUTHORITATIVE_READ,
                params={"fields": "email_address,status,merge_fields"},
            )
        except MailchimpError as exc:
            if exc.status == 404:
                return None
            raise SourceReadFailed(exc.error) from exc
        document = reply.document if isinstance(reply.document, dict) else {}
        merges = document.get("merge_fields") or {}
        return {str(tag).upper(): value for tag, value in merges.items()}


class AccessplanitUserReader:
    """The user the change came from (its ID, read as accessplanit's demo client reads one record), or, without
    one, the user the accessplanit target would write for the address (the most recently updated active one)."""

    system = System.ACCESSPLANIT

    def __init__(self, clients: AccessplanitClients) -> None:
        self._clients = clients

    async def read(self, instance: InstanceConfig, spec: SourceCheck, user_id: str | None) -> Mapping[str, Any] | None:
        priority = Priority.AUTHORITATIVE_READ
        try:
            client = self._clients.for_instance(instance)
            if user_id:
                user = await client.get_user(user_id, priority=priority)
            else:
                user = choose_user(await client.users_by_email(spec.email, priority=priority)).user
        except AccessplanitError as exc:
            raise SourceReadFailed(exc.error) from exc
        return None if user is None else user_fields(user)


def user_fields(user: Mapping[str, Any]) -> dict[str, Any]:
    """A user record by the names mappings use: custom fields as `custom:<Name>` beside the User fields."""
    custom = user.get("CustomFields")
    fields = {name: value for name, value in user.items() if name != "CustomFields"}
    if isinstance(custom, Mapping):
        fields.update({f"{CUSTOM_FIELD_PREFIX}{name}": value for name, value in custom.items()})
    return fields


class SourceCheckedTarget:
    def __init__(self, inner: Target, readers: Mapping[System, SourceReader], state: StateStore | None) -> None:
        self.system = inner.system
        self._inner = inner
        self._readers = readers
        self._state = state
        # The state checks before writes, read together (a backlog checks every command).
        self._sides = SideReads(state) if state is not None else None
        # Authoritative reads made, by source system: the soak reports them per edit.
        self.reads: Counter[System] = Counter()

    async def _in_flight(self, command: SyncCommand) -> list[str]:
        """Which of the writes `command` waits for are still pending (decided, not recorded)."""
        email = payload_email(command.target, command.payload) or command.identity.email
        if self._sides is None or email is None:
            return []
        side = await self._sides.side(command.instance_id, command.target, email)
        pending = side.pending_writes if side is not None else {}
        now_ms = int(time.time() * 1000)
        return [
            key
            for key, noted in command.waits_for.items()
            if pending.get(key) == noted and noted > now_ms - IN_FLIGHT_MS
        ]

    async def _after_landing(self, command: SyncCommand) -> bool:
        """Whether the writes `command` waits for landed in time (False: some were still in flight)."""
        # Polls the state the other write's record changes (Redis): there is nothing in this process to wait on.
        deadline = time.monotonic() + LAND_WAIT_S
        while time.monotonic() < deadline:
            if not await self._in_flight(command):
                return True
            await asyncio.sleep(0.05)
        return False

    async def _later_on_target(self, command: SyncCommand) -> CheckResult:
        """A write-back (or a command long queued) without the fields its target has since been given a later
        change for."""
        email = payload_email(command.target, command.payload) or command.identity.email
        if self._sides is None or email is None or not needs_target_check(command, utcnow()):
            return CheckResult(command)
        return later_on_target(command, await self._sides.side(command.instance_id, command.target, email))

    async def write(self, command: SyncCommand, instance: InstanceConfig) -> WriteOutcome:
        if command.waits_for and not await self._after_landing(command):
            # Written now, it could be overwritten by that write landing after it: it is tried again shortly instead
            # of holding this slot (a mark stops counting IN_FLIGHT_MS after its write was decided).
            message = f"the write(s) it follows were {STALE_WAIT} {LAND_WAIT_S:g} s"
            return WriteOutcome(
                False,
                f"Not written back yet: {message}",
                error=ErrorInfo(error_class="InFlightWrite", message=message, permanent=False),
                defer_s=LAND_WAIT_S,
            )
        later = await self._later_on_target(command)
        notes = list(later.logs)
        if later.command is None:
            what = "written back" if command.write_back else "written"
            return WriteOutcome(
                True, f"Not {what} to {self.system.label}: {'; '.join(notes)}", written=None, wrote=False
            )
        outcome = await self._checked(later.command, instance)
        if not notes:
            return outcome
        # What was written, when less than the command: the record of the write must say so.
        written = outcome.written or (later.command if later.command is not command else None)
        return replace(outcome, summary=f"{outcome.summary} ({'; '.join(notes)})", written=written)

    async def _checked(self, command: SyncCommand, instance: InstanceConfig) -> WriteOutcome:
        """The write, after the authoritative read when the command asks for one."""
        spec = command.source_check
        reader = self._readers.get(spec.system) if spec is not None else None
        if spec is None or reader is None:
            return await self._inner.write(command, instance)
        try:
            self.reads[spec.system] += 1
            values = await reader.read(instance, spec, command.identity.accessplanit_user_id)
        except SourceReadFailed as exc:
            summary = f"Not written yet: the re-read from {spec.system.label} failed ({exc.error.message})"
            return WriteOutcome(False, summary, error=exc.error)
        result = check(command, values)
        if result.read_digests and self._state is not None:
            transaction = self._state.transaction()
            transaction.merge(
                command.instance_id,
                spec.system,
                spec.email,
                result.read_digests,
                source_ts_ms=spec.ts_ms,
                origin="seen",
            )
            await transaction.execute()
        notes = "; ".join(result.logs)
        if result.command is None:
            return WriteOutcome(True, f"Not written to {self.system.label}: {notes}", written=None, wrote=False)
        outcome = await self._inner.write(result.command, instance)
        summary = f"{outcome.summary} ({notes})"
        # The target may have left out more (`targets.accessplanit`: an edit not read yet), or written nothing.
        return replace(outcome, summary=summary, written=outcome.written or result.command)

    async def close(self) -> None:
        await self._inner.close()
