"""A command's source check (pure): which of its fields the source still holds, by an authoritative read.

The mapper attaches a `SourceCheck` when it cannot prove a change later than Tandem's own write it raced (a clock
coarser than the gap between them, docs/convergence.md). The writer reads the contact from the source and writes a
checked field only while the source still holds the change's value: then the change is the source's latest. When
the source holds something else, the change was overwritten there (by Tandem's write, which then both sides hold)
or followed by a later change (whose own event carries it): the field is left out, and what was read is recorded
as the source's value.

A repair (a change written back to its own side, over which Tandem's write of another value may have landed) is
checked the other way round: a field is written back only while the side holds the value of Tandem's write it
raced. Holding the change's own value, the write landed before the change (or the repair is done already);
holding anything else, the side changed again and that change's own event carries it. Nothing read is recorded
then: the mapper already knows the change, and a later value must still arrive as news with its own event.

A held change being released after a resume is old by construction, and is checked on its target too
(`SourceCheck.held_change_ms`): a field the target holds a value of that Tandem does not know (`raced` lists the
ones it does), changed — by the record's own update time — not provably before the held change, is someone else's
later edit. It is left out, and nothing read is recorded: that edit's own event carries it (its webhook may come
only after this write, and accessplanit's is read back then: written over, the edit would be lost).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tandem_shared.contracts import CheckedField, SourceCheck, SyncCommand, System
from tandem_shared.contracts.instances import CUSTOM_FIELD_PREFIX
from tandem_shared.sync.rules import SideState, canonical_value, field_digest, payload_content, proven_older, ts_ms

# The record's own update time, as each target's read returns it (accessplanit User, Mailchimp member).
RECORD_UPDATED = {System.ACCESSPLANIT: "DateUpdated", System.MAILCHIMP: "last_changed"}


@dataclass(frozen=True)
class CheckResult:
    command: SyncCommand | None  # what to write (None: nothing left to write)
    confirmed: list[str] = field(default_factory=list)  # payload fields the source still holds
    # Source field → digest of the value the read found, for fields the source no longer holds as the change had it.
    read_digests: dict[str, str] = field(default_factory=dict)
    logs: list[str] = field(default_factory=list)


def _without(command: SyncCommand, names: set[str]) -> dict[str, Any]:
    payload = dict(command.payload)
    if command.target is System.MAILCHIMP:
        payload["merge_fields"] = {k: v for k, v in (payload.get("merge_fields") or {}).items() if k not in names}
        return payload
    custom = {k: v for k, v in (payload.get("CustomFields") or {}).items() if f"{CUSTOM_FIELD_PREFIX}{k}" not in names}
    payload = {k: v for k, v in payload.items() if k not in names and k != "CustomFields"}
    if custom:
        payload["CustomFields"] = custom
    return payload


def _mapped_fields_left(command: SyncCommand, payload: Mapping[str, Any]) -> bool:
    if command.target is System.MAILCHIMP:
        return bool(payload.get("merge_fields"))
    return any(k != "Email" for k in payload)


def _repair_note(label: str, checked: CheckedField, value: Any) -> str:
    name, held = checked.source_field, repr(canonical_value(value))
    digest = field_digest(value)
    if digest in checked.raced:
        return (
            f"Re-read from {label}: {name} holds {held}, the value of Tandem's write that landed over this change, "
            "so the change is written back"
        )
    if digest == checked.digest:
        return (
            f"Re-read from {label}: {name} already holds this change's value {held} (Tandem's write landed before "
            "it), so nothing is written back"
        )
    return (
        f"Re-read from {label}: {name} now holds {held}, neither this change's value nor Tandem's write it raced: "
        "it changed again since, and that change's own event carries it, so nothing is written back"
    )


def record_updated_ms(system: System, values: Mapping[str, Any]) -> int | None:
    value = values.get(RECORD_UPDATED[system])
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return ts_ms(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def _when(moment_ms: int) -> str:
    return datetime.fromtimestamp(moment_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


@dataclass(frozen=True)
class LaterEditWording:
    """How a check for someone's later edit on the target words its trace (`check_later_edits`)."""

    prefix: str  # what was read, and why
    change: str  # what the command carries
    carried_by: str  # what brings the edit left in place to the other side


def _release_wording(label: str) -> LaterEditWording:
    return LaterEditWording(f"Read {label} before releasing a held change", "this held change", "its own event")


def check_later_edits(
    command: SyncCommand, spec: SourceCheck, values: Mapping[str, Any] | None, wording: LaterEditWording
) -> CheckResult:
    """`command` without every field whose target holds a value Tandem does not know (`CheckedField.raced` lists
    those it does), changed by the record's own update time not provably before `spec.held_change_ms`: someone's
    later edit there, which its own event carries. Nothing read is recorded (that event must arrive as news)."""
    held_ms = spec.held_change_ms or 0
    prefix = wording.prefix
    if values is None:
        return CheckResult(command, logs=[f"{prefix}: no contact at {spec.email} to write over"])
    updated = record_updated_ms(spec.system, values)
    changed = "at an unknown time" if updated is None else f"at {_when(updated)}"
    confirmed: list[str] = []
    dropped: set[str] = set()
    logs: list[str] = []
    for target_field, checked in sorted(spec.fields.items()):
        value = values.get(checked.source_field)
        digest = field_digest(value)
        held = f"{checked.source_field} holds {canonical_value(value)!r}"
        if digest == checked.digest or digest in checked.raced:
            confirmed.append(target_field)
        elif updated is not None and proven_older(spec.system, updated, held_ms):
            confirmed.append(target_field)
            logs.append(
                f"{prefix}: {held}, changed {changed}, before {wording.change} from {_when(held_ms)}, so it is written"
            )
        else:
            dropped.add(target_field)
            logs.append(
                f"{prefix}: {held}, a value Tandem did not write nor see, changed {changed}, not before "
                f"{wording.change} from {_when(held_ms)}: a later edit there, not written over "
                f"({wording.carried_by} carries it)"
            )
    return _result(command, confirmed, dropped, {}, logs)


def _result(
    command: SyncCommand, confirmed: list[str], dropped: set[str], read_digests: dict[str, str], logs: list[str]
) -> CheckResult:
    if not dropped:
        return CheckResult(command, confirmed, read_digests, logs)
    payload = _without(command, dropped)
    if not _mapped_fields_left(command, payload):
        return CheckResult(None, confirmed, read_digests, logs)
    return CheckResult(command.model_copy(update={"payload": payload}), confirmed, read_digests, logs)


def check(command: SyncCommand, source_values: Mapping[str, Any] | None) -> CheckResult:
    """`source_values`: the contact's fields as the source's read returned them, by source field name (None: the
    source has no such contact any more)."""
    spec = command.source_check
    if spec is None:
        return CheckResult(command)
    if spec.held_change_ms is not None:
        return check_later_edits(command, spec, source_values, _release_wording(spec.system.label))
    label = spec.system.label
    if source_values is None:
        return CheckResult(
            None, logs=[f"Re-read from {label}: {spec.email} is not there any more; the change is not written"]
        )
    confirmed: list[str] = []
    dropped: set[str] = set()
    read_digests: dict[str, str] = {}
    logs: list[str] = []
    for target_field, checked in sorted(spec.fields.items()):
        value = source_values.get(checked.source_field)
        digest = field_digest(value)
        if checked.raced:
            if digest in checked.raced:
                confirmed.append(target_field)
            else:
                dropped.add(target_field)
            logs.append(_repair_note(label, checked, value))
            continue
        if digest == checked.digest:
            confirmed.append(target_field)
            logs.append(
                f"Re-read from {label}: {checked.source_field} still holds this change's value "
                f"{canonical_value(value)!r}, so it is the latest there and is written"
            )
        else:
            dropped.add(target_field)
            read_digests[checked.source_field] = digest
            logs.append(
                f"Re-read from {label}: {checked.source_field} now holds {canonical_value(value)!r}, not this "
                "change's value: the change was overwritten there or followed by a later one, so it is not written"
            )
    return _result(command, confirmed, dropped, read_digests, logs)


# A command decided longer ago than this may land after a write-back that stopped waiting for it (a pending mark
# counts for 10 s after its write was decided): it is checked against its target's state like a write-back.
STALE_COMMAND_S = 5.0


def needs_target_check(command: SyncCommand, now: datetime) -> bool:
    """Whether `command` is checked against what its target side holds before it is written (`later_on_target`):
    every write-back, and a command that waited in the writer's queue long enough for a write-back of a later change
    on its target to have stopped waiting for it."""
    return command.write_back or (now - command.created_at).total_seconds() > STALE_COMMAND_S


def later_on_target(command: SyncCommand, side: SideState | None) -> CheckResult:
    """`command` without the fields its target side has since been given a later change for, by what Tandem knows
    that side holds (`side`, read just before the write).

    A write-back (`SyncCommand.write_back`) is keyed by its source's contact (the accessplanit user, the Mailchimp
    address), the other direction's writes to that side by theirs: neither Kafka nor the writer's per-contact claim
    orders the two. A later change written there meanwhile (or seen there) must not be overwritten by an older value:
    its own event carries it to the other side, and it is what both sides end on."""
    if side is None:
        return CheckResult(command)
    own_ts = ts_ms(command.source_occurred_at)
    label = command.target.label
    later: set[str] = set()
    logs: list[str] = []
    for name, value in payload_content(command.target, command.payload).items():
        known = side.fields.get(name)
        if known is None or known.digest == field_digest(value) or known.ts_ms <= own_ts:
            continue
        later.add(name)
        how = "written by Tandem" if known.origin == "written" else "changed"
        logs.append(
            f"{name}: {label} has since been {how} with a later change (from {_when(known.ts_ms)}) than this one "
            f"(from {_when(own_ts)}), so this one is not written over it"
        )
    if not later:
        return CheckResult(command)
    payload = _without(command, later)
    if not _mapped_fields_left(command, payload):
        return CheckResult(None, logs=logs)
    return CheckResult(command.model_copy(update={"payload": payload}), logs=logs)
