"""SyncCommand: what the mapper asks the writer to do to one target for one contact."""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson
from pydantic import Field

from tandem_shared.contracts.common import ContactIdentity, Contract, Flow, System, Trigger


class Operation(StrEnum):
    """What the writer does with a command. Payload shapes per target are in `SyncCommand`'s docstring."""

    # Create the contact or update it, found by `identity.email`.
    UPSERT = "upsert"
    # The contact at `identity.old_email` now has the address `identity.email` (same contact, not a new one).
    CHANGE_EMAIL = "change_email"


class CheckedField(Contract):
    """One payload field whose value must still be the source's current one when the command is written."""

    source_field: str = Field(description="The field's name in the source system (merge tag or User field).")
    digest: str = Field(description="`tandem_shared.sync.rules.field_digest` of the value the change carried.")
    raced: list[str] = Field(
        default_factory=list,
        description="A repair (the command writes a change back to its own side): digests of Tandem's writes that "
        "may have landed over the change there. The field is written only while the side holds one of them.",
    )


class SourceCheck(Contract):
    """The mapper could not prove the change later than Tandem's own write (timestamps coarser than the gap, see
    docs/convergence.md): before writing, the writer reads the contact from `system` (priority
    AUTHORITATIVE_READ) and writes a field only while the source still holds the change's value for it.

    On a repair (`system` is the command's own target, its fields name what they `raced`), the read decides whether
    Tandem's write really landed over the change: the field is written back only while the side holds that write's
    value."""

    system: System
    email: str
    fields: dict[str, CheckedField] = Field(description="Payload field (target name) → what the source must hold.")
    ts_ms: int = Field(description="The time a value found by the read is recorded at in the source's state.")
    held_change_ms: int | None = Field(
        default=None,
        description="A held change being released (docs/convergence.md): its time, on its source's clock. `system` "
        "is then the command's target and each field's `raced` lists the values Tandem knows the target held; a "
        "field the target holds another value of, changed (by the record's update time) not provably before this "
        "time, is left out: someone else's later edit, which its own event carries.",
    )


class SyncCommand(Contract):
    """One write for one contact on one target, decided by the mapper; the writer's contract.

    `payload` holds only what is to be written: the identity plus the mapped fields whose values the target is not
    already known to hold. Fields not in the payload must be left as they are (partial update).

    Target **mailchimp** (`audience = instance.mailchimp.audience_id`):
      payload = {"email_address": str, "status_if_new": "subscribed" | "pending", "merge_fields": {TAG: value}}
      - UPSERT: `PUT /lists/{audience}/members/{subscriber_hash(payload["email_address"])}` with the payload.
      - CHANGE_EMAIL: `PATCH /lists/{audience}/members/{subscriber_hash(identity.old_email)}` with
        {"email_address": identity.email, "merge_fields": …} (no status_if_new on a PATCH). When no member has the
        old address (404: the user had not been synced yet), upsert the new address as for UPSERT.

    Target **accessplanit** (users created from Mailchimp join `instance.accessplanit.default_account_id`):
      payload = {"Email": str, "<User field>": value, …, "CustomFields": {"<Custom Field Name>": value}}
      (`CustomFields` only when a custom field is written; `None` clears a field.)
      - UPSERT: find users with `Email eq identity.email` (case-insensitive); update the most recently updated one
        (`PUT /api/v2/User/{ID}` with the payload); none → create (`POST /api/v2/User` with the payload plus
        `MainCompanyID` = the default account).
      - CHANGE_EMAIL: find users with `Email eq identity.old_email`; update the most recently updated one with the
        payload (which carries the new `Email`); none → as UPSERT on `identity.email`.

    After a successful write the writer calls `tandem_shared.redis.state.StateTransaction.record_written(command)`:
    that is how the mapper knows what the target holds (change detection) and recognises the write when the target
    reports it back (echo suppression).
    """

    command_id: str
    execution_id: str
    original_execution_id: str | None = None
    event_id: str
    instance_id: str
    target: System
    operation: Operation
    identity: ContactIdentity
    payload: dict[str, Any] = Field(description="Target-native body: a Mailchimp member or accessplanit user.")
    fingerprint: str = Field(
        description="sha256 of the payload's content (`tandem_shared.sync.rules.content_fingerprint`): the same "
        "values give the same fingerprint, whatever the key order or the case of the address."
    )
    idempotency_key: str
    attempt: int = 1
    trigger: Trigger
    source_occurred_at: datetime = Field(
        description="When the change happened in the source system: the time conflicts are decided by (the later "
        "change wins). The mapper decides them; a writer writes what it is given."
    )
    created_at: datetime
    source_check: SourceCheck | None = None
    waits_for: dict[str, int] = Field(
        default_factory=dict,
        description='Tandem\'s own writes to this target, still in flight when the mapper decided ("field|digest" '
        "→ when each was decided): this write must land after them, since it repairs what they overwrite.",
    )
    write_back: bool = Field(
        default=False,
        description="A change written back to its own source (a repair, docs/convergence.md). It is keyed by its "
        "source's contact, not like the other direction's writes to that side, so Kafka and the writer's "
        "per-contact claim do not order it after them: a field the side has since been written a later change "
        "for is left out.",
    )

    target_user_id: str | None = Field(
        default=None,
        description="Target accessplanit: the user Tandem last saw at the command's address. Should no user have "
        "the address any more (accessplanit moved the contact while this change was on its way), the writer writes "
        'the fields to this user, its new address left as it is (docs/convergence.md, "Moves").',
    )
    known_at_old: bool = Field(
        default=False,
        description="Target Mailchimp, an email change: Tandem saw or wrote the member at the old address. Should "
        "no member be at the old address nor at the new one, Mailchimp moved or removed it while this change was "
        'on its way, and none is created at the new address (docs/convergence.md, "Moves").',
    )
    may_precede_move: bool = Field(
        default=False,
        description="Target accessplanit, an upsert that would create a user: a Mailchimp change of an existing "
        "member (a profile change) at an address Tandem knows no contact at on either side. Mailchimp's address "
        "change that moves a known contact there may still be on its way (its webhook is keyed by the old "
        "address, on another partition), so while the command is younger than the writer's move grace the writer "
        "creates no user there: it looks again until the moved user is at the address, and writes to it "
        '(docs/convergence.md, "Moves").',
    )

    @property
    def flow(self) -> Flow:
        return Flow.from_source(self.target.other)


def canonical_json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def fingerprint(payload: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(payload)).hexdigest()


def idempotency_key(instance_id: str, target: System, contact_key: str, operation: Operation, fp: str) -> str:
    """Same instance, target, contact, operation and payload → same key: the write is done at most once."""
    raw = f"{instance_id}|{target.value}|{contact_key}|{operation.value}|{fp}"
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()
