"""What Tandem knows each side holds for each contact, as values and rules; `tandem_shared.redis.state` stores it.

The mapper decides from this whether a change carries anything new (change detection), whether it is Tandem's own
write coming back (echo suppression) and which of two concurrent changes is later (conflicts). The writer records
every successful write (`StateTransaction.record_written`): `recorded_write` says what that means.

One contact's side is stored as a hash (see `tandem_shared.redis.keys.state_key`):

    f:<field>          "<digest>|<source ts ms>|<seen|written>"  the value the side holds, as a digest
    r:<field>|<digest> "<source ts ms>|<recorded ms>"            a recent write by Tandem (echoes, late ones too)
    p:<field>|<digest> "<noted ms>|<command id>"                 a write Tandem decided and has not recorded yet
    _last              "<seen|written>|<source ts ms>"           who changed the contact last
    _uid               "<accessplanit user id>"                  accessplanit's side: the user last seen there

A move (an email change seen or written) renames the hash to the new address and leaves a forward pointer at the
old one (`tandem_shared.redis.keys.moved_key`), so a change still naming the old address finds the contact.

<field> is the name in the instance's mappings: a merge tag, an accessplanit field or 'custom:<name>'. Values are
stored as digests, never as values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from tandem_shared.contracts import Operation, SyncCommand, System, canonical_json, email_key, fingerprint
from tandem_shared.contracts.instances import CUSTOM_FIELD_PREFIX

Origin = Literal["seen", "written"]

DEFAULT_TTL_S = 180 * 24 * 3600
# How long a write by Tandem is remembered individually: long enough for the target's webhook to come back.
DEFAULT_RECENT_WINDOW_MS = 15 * 60 * 1000


# How coarse each vendor's change times are: Mailchimp's `fired_at` (and `last_changed`) has whole seconds, so a
# change stamped second S happened somewhere in [S, S + 1 s). accessplanit's DateUpdated has milliseconds.
CLOCK_UNCERTAINTY_MS = {System.MAILCHIMP: 1000, System.ACCESSPLANIT: 0}


def proven_older(system: System, event_ts_ms: int, other_ts_ms: int) -> bool:
    """Whether a change of `system` stamped `event_ts_ms` certainly happened before `other_ts_ms`."""
    return event_ts_ms + max(CLOCK_UNCERTAINTY_MS[system], 1) <= other_ts_ms


def ts_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def canonical_value(value: Any) -> str:
    """One text form per value, so values that mean the same compare equal (None and "" alike, 4 and "4")."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, Mapping):
        parts = {str(k): canonical_value(v) for k, v in value.items()}
        return canonical_json({k: v for k, v in parts.items() if v}).decode()
    if isinstance(value, list | tuple):
        return canonical_json([canonical_value(v) for v in value]).decode()
    return str(value).strip()


def field_digest(value: Any) -> str:
    return hashlib.sha256(canonical_value(value).encode("utf-8")).hexdigest()[:16]


EMPTY_DIGEST = field_digest(None)


def payload_email(target: System, payload: Mapping[str, Any]) -> str | None:
    value = payload.get("email_address" if target is System.MAILCHIMP else "Email")
    return value.strip() if isinstance(value, str) and value.strip() else None


def payload_content(target: System, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The mapped fields a payload writes, by their mapping names; the address (the identity) is left out."""
    if target is System.MAILCHIMP:
        merges = payload.get("merge_fields") or {}
        return {str(tag).upper(): value for tag, value in merges.items()}
    content = {k: v for k, v in payload.items() if k not in ("Email", "CustomFields")}
    for name, value in (payload.get("CustomFields") or {}).items():
        content[f"{CUSTOM_FIELD_PREFIX}{name}"] = value
    return content


def content_fingerprint(target: System, payload: Mapping[str, Any]) -> str:
    email = payload_email(target, payload)
    content = {f: canonical_value(v) for f, v in payload_content(target, payload).items()}
    return fingerprint({"email": email_key(email) if email else None, "fields": content})


@dataclass(frozen=True)
class FieldState:
    digest: str
    ts_ms: int
    origin: Origin


@dataclass(frozen=True)
class RecentWrite:
    source_ts_ms: int  # when the change Tandem wrote happened in its source system
    recorded_ms: int  # when the write was done (the writer's clock)


@dataclass(frozen=True)
class SideState:
    """What one side is known to hold for one contact."""

    fields: Mapping[str, FieldState]
    last_origin: Origin
    last_ts_ms: int
    # "field|digest" → a recent write by Tandem of that value.
    recent_writes: Mapping[str, RecentWrite] = field(default_factory=dict)
    # "field|digest" → when the mapper decided a write of that value the writer has not recorded yet (in flight).
    pending_writes: Mapping[str, int] = field(default_factory=dict)
    # Set on a side's state at an address this side does *not* hold the contact at, because it refused to move it
    # there (Mailchimp refuses email changes of members who are not subscribed): the address it holds it at instead.
    held_at: str | None = None
    # "field|digest" → when Tandem's write recorded a different value over that one (the value it replaced).
    replaced: Mapping[str, int] = field(default_factory=dict)
    # accessplanit's side: the user Tandem last saw at this address (a write finds it there after a move).
    user_id: str | None = None

    def written_recently(self, name: str, digest: str) -> RecentWrite | None:
        return self.recent_writes.get(f"{name}|{digest}")

    def replaced_at(self, name: str, digest: str) -> int | None:
        """When a write by Tandem replaced this value of `name` (recently), if one did."""
        return self.replaced.get(f"{name}|{digest}")

    def in_flight(self, name: str, other_than: str, since_ms: int) -> dict[str, int]:
        """Tandem's writes of another value of `name` decided after `since_ms` and not recorded yet."""
        prefix = f"{name}|"
        return {
            key: noted
            for key, noted in self.pending_writes.items()
            if key.startswith(prefix) and key != f"{name}|{other_than}" and noted >= since_ms
        }

    def known_digests(self, name: str) -> list[str]:
        """Digests of the values of `name` Tandem knows this side held: seen there, or written (recently, or about to
        be) by Tandem. A value outside them is someone's edit Tandem has not seen (yet)."""
        prefix = f"{name}|"
        marks = [*self.recent_writes, *self.pending_writes]
        digests = {key.split("|", 1)[1] for key in marks if key.startswith(prefix)}
        known = self.fields.get(name)
        if known is not None:
            digests.add(known.digest)
        return sorted(digests)


# The state hash's field for `SideState.held_at`.
HELD_AT_FIELD = "_at"
# The state hash's field for `SideState.user_id`.
USER_ID_FIELD = "_uid"


def parse_state(raw: Mapping[str, str]) -> SideState | None:
    """A side from its stored hash (None when nothing is known)."""
    if not raw:
        return None
    fields: dict[str, FieldState] = {}
    recent: dict[str, RecentWrite] = {}
    pending: dict[str, int] = {}
    replaced: dict[str, int] = {}
    last_origin: Origin = "seen"
    last_ts = 0
    held_at: str | None = None
    user_id: str | None = None
    for name, value in raw.items():
        if name.startswith("f:"):
            digest, ts, origin = value.split("|", 2)
            fields[name[2:]] = FieldState(digest, int(ts), "written" if origin == "written" else "seen")
        elif name.startswith("r:"):
            source_ts, _, recorded = value.partition("|")
            recent[name[2:]] = RecentWrite(int(source_ts), int(recorded or 0))
        elif name.startswith("p:"):
            # "<noted ms>|<command id>"; marks written before the command id was kept are the time alone.
            pending[name[2:]] = int(value.partition("|")[0] or 0)
        elif name.startswith("o:"):
            replaced[name[2:]] = int(value or 0)
        elif name == "_last":
            origin, _, ts = value.partition("|")
            last_origin = "written" if origin == "written" else "seen"
            last_ts = int(ts or 0)
        elif name == HELD_AT_FIELD:
            held_at = value or None
        elif name == USER_ID_FIELD:
            user_id = value or None
    return SideState(fields, last_origin, last_ts, recent, pending, held_at=held_at, replaced=replaced, user_id=user_id)


# One side of one contact: (instance, system, email_key(address)); addresses that differ in case are one contact.
SideKey = tuple[str, System, str]


@dataclass(frozen=True)
class Pointer:
    """A forward pointer (`tandem_shared.redis.keys.moved_key`): the address a side moved the contact to, and when
    the change that moved it happened (its source's clock), so that two address changes at once can be ordered by
    their clocks where those tell them apart (docs/convergence.md, "Moves")."""

    address: str
    ts_ms: int | None = None

    def encode(self) -> str:
        # A space never occurs in the addresses Tandem syncs (both vendors refuse it unquoted).
        return self.address if self.ts_ms is None else f"{self.ts_ms} {self.address}"

    @classmethod
    def decode(cls, value: str) -> Pointer:
        """Also a pointer without a time, as versions before it was kept wrote them."""
        stamp, sep, address = value.partition(" ")
        if sep and stamp.isdigit():
            return cls(address, int(stamp))
        return cls(value)


def side_key(instance_id: str, system: System, email: str) -> SideKey:
    return (instance_id, system, email_key(email))


@dataclass(frozen=True)
class StateSnapshot:
    """What one `StateStore.load_many` read; asking for anything it did not read is a bug (KeyError)."""

    sides: Mapping[SideKey, SideState | None]
    user_emails: Mapping[tuple[str, str], str | None]  # (instance, accessplanit user id) → address
    backlogs: Mapping[str, int]  # instance → held changes waiting
    # Side → where the side moved the contact to from this address, recently, and when (read with the side).
    moves: Mapping[SideKey, Pointer] = field(default_factory=dict)

    def side(self, instance_id: str, system: System, email: str) -> SideState | None:
        return self.sides[side_key(instance_id, system, email)]

    def has(self, instance_id: str, system: System, email: str) -> bool:
        """Whether this snapshot read the side (known or not)."""
        return side_key(instance_id, system, email) in self.sides

    def moved_to(self, instance_id: str, system: System, email: str) -> str | None:
        """Where the side moved the contact to from `email` (a forward pointer), if it did recently."""
        pointer = self.moves.get(side_key(instance_id, system, email))
        return pointer.address if pointer else None

    def moved_at(self, instance_id: str, system: System, email: str) -> int | None:
        """When that move happened, by the clock of the change that made it (None: not known)."""
        pointer = self.moves.get(side_key(instance_id, system, email))
        return pointer.ts_ms if pointer else None

    def user_email(self, instance_id: str, user_id: str) -> str | None:
        return self.user_emails[(instance_id, user_id)]

    def backlog(self, instance_id: str) -> int:
        return self.backlogs[instance_id]

    def extend(self, other: StateSnapshot) -> StateSnapshot:
        return StateSnapshot(
            {**self.sides, **other.sides},
            {**self.user_emails, **other.user_emails},
            {**self.backlogs, **other.backlogs},
            {**self.moves, **other.moves},
        )


@dataclass(frozen=True)
class RecordedWrite:
    """What a successful write tells about its target: the contact (moved from `moved_from` when the write changed
    its address) now holds these digests, written by Tandem at the source time of the change."""

    instance_id: str
    system: System
    email: str
    digests: Mapping[str, str]
    source_ts_ms: int
    moved_from: str | None = None


def recorded_write(command: SyncCommand) -> RecordedWrite | None:
    """What the target holds once `command` is written (None: a command without an address records nothing)."""
    email = payload_email(command.target, command.payload) or command.identity.email
    if email is None:
        return None
    old = command.identity.old_email
    moved = command.operation is Operation.CHANGE_EMAIL and bool(old) and email_key(old or "") != email_key(email)
    return RecordedWrite(
        instance_id=command.instance_id,
        system=command.target,
        email=email,
        digests={name: field_digest(v) for name, v in payload_content(command.target, command.payload).items()},
        source_ts_ms=ts_ms(command.source_occurred_at),
        moved_from=old if moved else None,
    )


@dataclass(frozen=True)
class ExpectedWrite:
    """The mapper's note that Tandem is about to write these values: recent-write fields of one side's hash."""

    instance_id: str
    system: System
    email: str
    fields: Mapping[str, str]


def expected_write(command: SyncCommand, now_ms: int) -> ExpectedWrite | None:
    """The note for `command` (None: nothing to note). The target's webhook for the write can reach the mapper
    before the writer has recorded the write; with this note the echo is recognised all the same."""
    email = payload_email(command.target, command.payload) or command.identity.email
    if email is None:
        return None
    content = payload_content(command.target, command.payload)
    if not content:
        return None
    noted = f"{ts_ms(command.source_occurred_at)}|{now_ms}"
    fields = {f"r:{name}|{field_digest(value)}": noted for name, value in content.items()}
    # Until the writer records it (`_MERGE` deletes these): a change of the target decided meanwhile may be
    # overwritten by this write when it lands. The command id says whose mark it is, so the writer can clear the
    # marks of a write that will never land (`pending_marks`) without touching a later command's mark of the same
    # value.
    fields.update({f"p:{mark}": f"{now_ms}|{command.command_id}" for mark in pending_marks(command)})
    return ExpectedWrite(command.instance_id, command.target, email, fields)


def pending_marks(command: SyncCommand) -> list[str]:
    """The pending marks ("<field>|<digest>", stored as `p:<field>|<digest>`) the mapper's note of `command`
    leaves on its target's side."""
    return [f"{name}|{field_digest(value)}" for name, value in payload_content(command.target, command.payload).items()]


@dataclass(frozen=True)
class AbandonedMarks:
    """Pending marks of a command whose write will never land (or never land with these values): the writer
    clears them, each only while it is still this command's (`command_id`)."""

    instance_id: str
    system: System
    email: str
    command_id: str
    marks: list[str]


def abandoned_marks(command: SyncCommand, landed: SyncCommand | None) -> AbandonedMarks | None:
    """The marks of `command` left behind once its delivery is over without a write still to come: `landed` is
    what was written and recorded (None: nothing was). Recording a write clears its own marks; what remains is the
    marks of values that will never be written — a command folded into a newer one, superseded, skipped, dead-
    lettered, or whose source check left fields out. Left in place, such a mark makes every change of that field
    on the target for the next seconds look raced by an in-flight write: written back, after waiting for a write
    that never comes (docs/convergence.md)."""
    email = payload_email(command.target, command.payload) or command.identity.email
    if email is None:
        return None
    marks = pending_marks(command)
    if landed is not None:
        kept = set(pending_marks(landed))
        marks = [m for m in marks if m not in kept]
    if not marks:
        return None
    return AbandonedMarks(command.instance_id, command.target, email, command.command_id, marks)
