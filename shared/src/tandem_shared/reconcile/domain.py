"""Reconciliation, pure: both sides as read → pairs by address → a category per contact, the differences per mapped
field, the report row, and (on a repair run) the change to publish.

Differences are found by comparing the two sides as read, never against Tandem's stored state (which may have
expired or been erased). A repair is a `ChangeEvent` (trigger `reconcile`) of the side whose record changed last,
so the mapper applies the instance's direction, mappings, consent and conflict rules to it like to any change; its
`occurred_at` is that record's own DateUpdated / last_changed, so a stale snapshot never beats a live edit.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from tandem_shared.contracts import (
    ChangeEvent,
    ChangeKind,
    ContactIdentity,
    Flow,
    InstanceConfig,
    System,
    Transform,
    Trigger,
    canonical_json,
    deterministic_event_id,
    email_key,
    subscriber_hash,
)
from tandem_shared.contracts.instances import CUSTOM_FIELD_PREFIX
from tandem_shared.contracts.reconcile import RepairSides, ReportRow

# accessplanit refuses a user without these (v1 field matrix); a Mailchimp contact without them is not created there.
ACCESSPLANIT_NAMES = ("Forenames", "Surname")
# Read with every user whatever is mapped: identity, timestamps, deletion and echo detection.
ACCESSPLANIT_BASE_FIELDS = ("ID", "Email", "DateCreated", "DateUpdated", "Status", "UpdatedByID")
MAILCHIMP_OPTED_OUT = ("unsubscribed", "cleaned", "archived")
DELETED_STATUS = "Deleted"


class Category(StrEnum):
    EQUAL = "equal"
    DIFFERENT = "different"
    ONLY_ACCESSPLANIT = "only_accessplanit"
    ONLY_MAILCHIMP = "only_mailchimp"
    DUPLICATE_ACCESSPLANIT = "duplicate_accessplanit"  # several accessplanit users share the address
    MAILCHIMP_UNSUBSCRIBED = "mailchimp_unsubscribed"
    MAILCHIMP_CLEANED = "mailchimp_cleaned"
    MAILCHIMP_ARCHIVED = "mailchimp_archived"
    NO_EMAIL = "accessplanit_no_email"
    MISSING_NAMES = "mailchimp_missing_names"  # only in Mailchimp, without the names accessplanit requires
    TOMBSTONED = "tombstoned"  # only on one side, and Tandem saw it deleted on the other


@dataclass(frozen=True)
class FieldPair:
    mailchimp: str
    accessplanit: str
    transform: Transform | None
    flows: tuple[Flow, ...]

    @property
    def label(self) -> str:
        return f"{self.mailchimp} ⇄ {self.accessplanit}"


@dataclass(frozen=True)
class ApUser:
    user_id: str
    email: str | None
    updated_at: datetime | None
    record: dict[str, Any]


@dataclass(frozen=True)
class McMember:
    email: str
    status: str
    last_changed: datetime | None
    merge_fields: dict[str, Any]


@dataclass(frozen=True)
class Repair:
    """What a repair run publishes for one contact: the record of `source`, for the mapper to carry to its other
    side."""

    source: System
    ap_user: ApUser | None = None
    member: McMember | None = None


@dataclass(frozen=True)
class Finding:
    key: str  # the lower-cased address (or "~ap:<id>" for a user without one): the run's order and checkpoint
    category: Category
    row: ReportRow | None
    repair: Repair | None = None


@dataclass
class Sides:
    """Both sides as read, indexed by lower-cased address."""

    accessplanit: dict[str, list[ApUser]] = field(default_factory=dict)
    no_email: list[ApUser] = field(default_factory=list)
    mailchimp: dict[str, McMember] = field(default_factory=dict)

    def add_user(self, user: ApUser) -> None:
        if user.email is None:
            self.no_email.append(user)
        else:
            self.accessplanit.setdefault(email_key(user.email), []).append(user)

    def add_member(self, member: McMember) -> None:
        key = email_key(member.email)
        known = self.mailchimp.get(key)
        # An address both archived and subscribed cannot happen in one audience; keep the live one if it did.
        if known is None or known.status == "archived":
            self.mailchimp[key] = member


def field_pairs(instance: InstanceConfig, only_fields: Iterable[str] = ()) -> list[FieldPair]:
    """The mapped fields to compare (the address is the pairing itself), each with the flows that may carry it;
    `only_fields` (either side's name, case-insensitive for merge tags) narrows them."""
    wanted = {f.strip() for f in only_fields if f.strip()}
    pairs: list[FieldPair] = []
    for mapping in instance.mappings:
        if mapping.is_identity:
            continue
        if wanted and not ({mapping.mailchimp, mapping.accessplanit} & wanted or mapping.mailchimp in _upper(wanted)):
            continue
        flows = tuple(f for f in Flow if mapping.allows(f) and instance.direction.allows(f))
        if flows:
            pairs.append(FieldPair(mapping.mailchimp, mapping.accessplanit, mapping.transform, flows))
    return pairs


def unknown_fields(instance: InstanceConfig, only_fields: Iterable[str]) -> list[str]:
    """Names in `only_fields` that no mapping of the instance has (a typo must not narrow the run to nothing)."""
    names = {m.mailchimp for m in instance.mappings} | {m.accessplanit for m in instance.mappings}
    return [f for f in only_fields if f.strip() and f.strip() not in names and f.strip().upper() not in names]


def _upper(names: set[str]) -> set[str]:
    return {n.upper() for n in names}


def accessplanit_select(instance: InstanceConfig) -> str:
    """`$select` for the user pages: the base fields and the mapped ones (custom fields come in CustomFields)."""
    names = list(ACCESSPLANIT_BASE_FIELDS)
    for mapping in instance.mappings:
        name = "CustomFields" if mapping.accessplanit.startswith(CUSTOM_FIELD_PREFIX) else mapping.accessplanit
        if name not in names:
            names.append(name)
    return ",".join(names)


def mailchimp_fields(instance: InstanceConfig) -> str:
    """`fields=` for the member pages: only what is compared or needed to pair and publish."""
    paths = ["members.email_address", "members.status", "members.last_changed", "total_items"]
    tags = sorted({m.mailchimp for m in instance.mappings if not m.is_identity})
    paths.extend(f"members.merge_fields.{tag}" for tag in tags)
    return ",".join(paths)


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def ap_user(record: Mapping[str, Any]) -> ApUser | None:
    """A user record as read; None for one without an ID or one accessplanit marks deleted."""
    user_id = record.get("ID")
    if user_id in (None, "") or record.get("Status") == DELETED_STATUS:
        return None
    email = record.get("Email")
    email = email.strip() if isinstance(email, str) and email.strip() else None
    return ApUser(str(user_id), email, parse_time(record.get("DateUpdated")), dict(record))


def mc_member(doc: Mapping[str, Any], *, archived: bool = False) -> McMember | None:
    email = doc.get("email_address")
    if not isinstance(email, str) or not email.strip():
        return None
    merges = doc.get("merge_fields")
    status = "archived" if archived else str(doc.get("status") or "")
    return McMember(email.strip(), status, parse_time(doc.get("last_changed")), dict(merges or {}))


# -- comparing values ---------------------------------------------------------------------------------------------

_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_ADDRESS_PARTS = ("addr1", "addr2", "city", "state", "zip", "country")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, Mapping):
        return ", ".join(p for p in (_text(value.get(k)) for k in _ADDRESS_PARTS) if p)
    return " ".join(str(value).split())


def comparable(transform: Transform | None, value: Any) -> str:
    """A value in a form both sides' versions of it share, so only a real difference shows as one."""
    text = _text(value)
    if transform is Transform.DATE:
        match = _ISO_DATE.match(text)
        return match.group(0) if match else text
    if transform is Transform.BIRTHDAY:
        match = _ISO_DATE.match(text)
        if match:
            return f"{match.group(2)}/{match.group(3)}"
        parts = text.split("/")
        if len(parts) == 2 and all(p.isdigit() for p in parts):
            return f"{int(parts[0]):02d}/{int(parts[1]):02d}"
        return text
    if transform is Transform.NUMBER:
        try:
            number = float(text.replace(",", ""))
        except ValueError:
            return text
        return str(int(number)) if number.is_integer() else str(number)
    return text


def ap_value(user: ApUser, name: str) -> Any:
    if name.startswith(CUSTOM_FIELD_PREFIX):
        custom = user.record.get("CustomFields")
        return custom.get(name[len(CUSTOM_FIELD_PREFIX) :].strip()) if isinstance(custom, Mapping) else None
    return user.record.get(name)


def differences(pairs: Iterable[FieldPair], user: ApUser, member: McMember) -> dict[str, FieldPair]:
    """label → pair, for each compared field whose values differ."""
    found: dict[str, FieldPair] = {}
    for pair in pairs:
        if pair.transform is Transform.ADDRESS:
            # One line in accessplanit from Mailchimp's parts: compared as that line.
            ours = _text(member.merge_fields.get(pair.mailchimp))
        else:
            ours = comparable(pair.transform, member.merge_fields.get(pair.mailchimp))
        if comparable(pair.transform, ap_value(user, pair.accessplanit)) != ours:
            found[pair.label] = pair
    return found


# -- classifying ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """What a run may do: repair or only report, to which sides, and the addresses deleted on each side."""

    repair: bool
    only: RepairSides = RepairSides.BOTH
    tombstones: Mapping[System, frozenset[str]] = field(default_factory=dict)
    tombstone_digest: Callable[[str], str] | None = None  # the keyed hash tombstones are kept under

    def may_write(self, instance: InstanceConfig, flow: Flow) -> bool:
        if not instance.direction.allows(flow):
            return False
        return self.only is RepairSides.BOTH or self.only.value == flow.target.value

    def deleted_on(self, system: System, email: str) -> bool:
        if self.tombstone_digest is None:
            return False
        return self.tombstone_digest(email) in self.tombstones.get(system, frozenset())


def _action(repair: Repair | None, policy: Policy, why_not: str) -> str:
    if repair is None:
        return why_not
    target = repair.source.other.label
    return f"repaired: {repair.source.label} → {target}" if policy.repair else f"would repair: → {target}"


def _row(
    key_email: str | None,
    category: Category,
    *,
    users: list[ApUser],
    member: McMember | None = None,
    diffs: Mapping[str, FieldPair] | None = None,
    action: str,
) -> ReportRow:
    user = users[0] if len(users) == 1 else None
    values: dict[str, dict[str, Any]] = {}
    for label, pair in (diffs or {}).items():
        values[label] = {
            "accessplanit": ap_value(user, pair.accessplanit) if user else None,
            "mailchimp": member.merge_fields.get(pair.mailchimp) if member else None,
        }
    return ReportRow(
        email=key_email,
        category=category.value,
        accessplanit_user_ids=[u.user_id for u in users],
        mailchimp_status=member.status if member else None,
        accessplanit_updated_at=user.updated_at if user else None,
        mailchimp_last_changed=member.last_changed if member else None,
        differences=values,
        action=action,
    )


def _names_missing(instance: InstanceConfig, member: McMember) -> list[str]:
    flow = Flow.MAILCHIMP_TO_ACCESSPLANIT
    missing = []
    for name in ACCESSPLANIT_NAMES:
        sources = [m.mailchimp for m in instance.mappings_for(flow) if m.accessplanit == name]
        if sources and not any(_text(member.merge_fields.get(tag)) for tag in sources):
            missing.append(name)
    return missing


def _classify_pair(
    instance: InstanceConfig, pairs: list[FieldPair], policy: Policy, users: list[ApUser], member: McMember | None
) -> tuple[Category, Repair | None, dict[str, FieldPair], str]:
    """Category, the repair (None: nothing to publish), the differing fields and why nothing is published."""
    to_mc, to_ap = Flow.ACCESSPLANIT_TO_MAILCHIMP, Flow.MAILCHIMP_TO_ACCESSPLANIT
    if member is not None and member.status in MAILCHIMP_OPTED_OUT:
        category = Category(f"mailchimp_{member.status}")
        return category, None, {}, f"reported only: {member.status} in Mailchimp, never resubscribed"
    if len(users) > 1:
        return Category.DUPLICATE_ACCESSPLANIT, None, {}, "reported only: several accessplanit users, one address"
    if member is None:
        user = users[0]
        if policy.deleted_on(System.MAILCHIMP, user.email or ""):
            return Category.TOMBSTONED, None, {}, "reported only: deleted in Mailchimp, not created again"
        if not policy.may_write(instance, to_mc):
            return Category.ONLY_ACCESSPLANIT, None, {}, "reported only: not written to Mailchimp by this run"
        return Category.ONLY_ACCESSPLANIT, Repair(System.ACCESSPLANIT, ap_user=user), {}, ""
    if not users:
        if policy.deleted_on(System.ACCESSPLANIT, member.email):
            return Category.TOMBSTONED, None, {}, "reported only: deleted in accessplanit, not created again"
        missing = _names_missing(instance, member)
        if missing:
            return Category.MISSING_NAMES, None, {}, f"reported only: accessplanit requires {', '.join(missing)}"
        if not policy.may_write(instance, to_ap):
            return Category.ONLY_MAILCHIMP, None, {}, "reported only: not written to accessplanit by this run"
        return Category.ONLY_MAILCHIMP, Repair(System.MAILCHIMP, member=member), {}, ""
    user = users[0]
    diffs = differences(pairs, user, member)
    if not diffs:
        return Category.EQUAL, None, {}, ""
    flows = [f for f in (to_mc, to_ap) if policy.may_write(instance, f) and any(f in p.flows for p in diffs.values())]
    if not flows:
        return Category.DIFFERENT, None, diffs, "reported only: the direction or --only lets no side be written"
    if len(flows) == 2:
        # The side changed last carries its values over; on a tie accessplanit's, as the mapper's conflict rule.
        ap_at, mc_at = user.updated_at, member.last_changed
        newer_mc = ap_at is not None and mc_at is not None and mc_at > ap_at
        flows = [to_ap if newer_mc or ap_at is None else to_mc]
    source = flows[0].source
    repair = Repair(source, ap_user=user) if source is System.ACCESSPLANIT else Repair(source, member=member)
    return Category.DIFFERENT, repair, diffs, ""


def classify(instance: InstanceConfig, sides: Sides, policy: Policy, pairs: list[FieldPair]) -> Iterator[Finding]:
    """Every contact of both sides, in address order (the order a checkpoint resumes from)."""
    for key in sorted(sides.accessplanit.keys() | sides.mailchimp.keys()):
        users = sides.accessplanit.get(key, [])
        member = sides.mailchimp.get(key)
        category, repair, diffs, why_not = _classify_pair(instance, pairs, policy, users, member)
        if category is Category.EQUAL:
            yield Finding(key, category, None)
            continue
        email = member.email if member else users[0].email
        row = _row(email, category, users=users, member=member, diffs=diffs, action=_action(repair, policy, why_not))
        yield Finding(key, category, row, repair)
    for user in sorted(sides.no_email, key=lambda u: u.user_id):
        row = _row(None, Category.NO_EMAIL, users=[user], action="reported only: no address to pair by")
        yield Finding(f"~ap:{user.user_id}", Category.NO_EMAIL, row)


# -- repairs -------------------------------------------------------------------------------------------------------


def repair_event(
    instance: InstanceConfig, repair: Repair, *, run_id: str, received_at: datetime, pairs: list[FieldPair]
) -> ChangeEvent | None:
    """The change a repair publishes: the record as read, limited to the compared fields (so `--fields` limits the
    write too), dated by the record itself. None when the record carries no time to date it by."""
    names = {p.accessplanit for p in pairs} if repair.source is System.ACCESSPLANIT else {p.mailchimp for p in pairs}
    if repair.source is System.ACCESSPLANIT and repair.ap_user is not None:
        user = repair.ap_user
        if user.updated_at is None:
            return None
        fields = {k: v for k, v in user.record.items() if k in ACCESSPLANIT_BASE_FIELDS or k in names}
        custom = {n[len(CUSTOM_FIELD_PREFIX) :].strip() for n in names if n.startswith(CUSTOM_FIELD_PREFIX)}
        if custom and isinstance(user.record.get("CustomFields"), Mapping):
            fields["CustomFields"] = {k: v for k, v in user.record["CustomFields"].items() if k in custom}
        identity = ContactIdentity(accessplanit_user_id=user.user_id, email=user.email)
        occurred_at, record_id, kind = user.updated_at, user.user_id, ChangeKind.UPDATED
        updated_by = user.record.get("UpdatedByID")
    elif repair.member is not None:
        member = repair.member
        if member.last_changed is None:
            return None
        fields = {k: v for k, v in member.merge_fields.items() if k in names}
        fields.update(email=member.email, list_id=instance.mailchimp.audience_id, status=member.status)
        identity = ContactIdentity(email=member.email, mailchimp_member_id=subscriber_hash(member.email))
        occurred_at, record_id, kind = member.last_changed, subscriber_hash(member.email), ChangeKind.UPDATED
        updated_by = None
    else:
        return None
    digest = hashlib.sha256(canonical_json(fields)).hexdigest()[:16]
    event_id = deterministic_event_id(
        Trigger.RECONCILE.value, instance.id, repair.source.value, record_id, occurred_at.isoformat(), digest
    )
    return ChangeEvent(
        event_id=event_id,
        # One execution per run and contact: a resumed run that publishes the contact again continues it.
        execution_id=deterministic_event_id("reconcile-execution", run_id, event_id),
        instance_id=instance.id,
        source=repair.source,
        kind=kind,
        identity=identity,
        fields=fields,
        occurred_at=occurred_at,
        received_at=received_at,
        trigger=Trigger.RECONCILE,
        updated_by_id=None if updated_by in (None, "") else str(updated_by),
        source_action="reconcile",
    )


# -- estimates -----------------------------------------------------------------------------------------------------


def writes_eta_s(
    repairs: Mapping[System, int], *, ap_requests_per_hour: float, mailchimp_members_per_s: float
) -> float:
    """How long the pipeline needs to write what a repair run published (`repairs`: per target side), at the
    vendors' own limits: accessplanit
    needs two requests a user (look-up by address, then create or update) out of its hourly budget; Mailchimp
    takes members in batches at `mailchimp_members_per_s`. Both sides are written at once: the slower one decides."""
    ap = repairs.get(System.ACCESSPLANIT, 0) * 2 / max(ap_requests_per_hour, 1e-9) * 3600
    mc = repairs.get(System.MAILCHIMP, 0) / max(mailchimp_members_per_s, 1e-9)
    return max(ap, mc)
