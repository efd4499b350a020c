"""What the mapper decides for one change (pure): a command for the other side, or why there is none.

The decision rests on what is known about the contact on both sides (`Knowledge`, loaded by the service):

- Change detection: a field is sent only when the target is not already known to hold its value.
- Echo suppression: a change that only repeats what Tandem wrote to its source stops here (accessplanit: also
  made by the integration user).
- Conflicts: per field, a change made on the target side since wins when it is later; on a tie accessplanit's wins
  (a value the target holds because Tandem wrote it there from the source is simply replaced).
- Ambiguity: a value that differs from everything Tandem wrote is dropped as older only when it is *proven* older
  (`tandem_shared.sync.rules.proven_older`: Mailchimp's clock has whole seconds). Within the clock's uncertainty it
  is sent, ordered after the change it raced (Tandem received it later), with a `SourceCheck`: the writer re-reads
  the source and writes it only while the source still holds it (docs/convergence.md). When a
  later change on one side arrives after Tandem wrote an older value over it there, the later value is written
  back to that side too (a repair), so the outcome does not depend on the order in which changes arrive.
- Email changes: the contact keeps its identity on the other side (`Operation.CHANGE_EMAIL`), unless the instance
  keeps the seed's behaviour (`EmailChangePolicy.NEW_CONTACT`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tandem_mapper.domain.mapping import accessplanit_problem, build_payload, map_record, read_record, source_names
from tandem_mapper.domain.model import (
    Decision,
    HoldAt,
    Knowledge,
    MergeSeen,
    MoveState,
    RememberUserEmail,
    StateUpdate,
    event_email,
    old_address,
)
from tandem_shared.contracts import (
    ChangeEvent,
    ChangeKind,
    CheckedField,
    EmailChangePolicy,
    ErrorInfo,
    InstanceConfig,
    Operation,
    SourceCheck,
    SyncCommand,
    System,
    TraceStatus,
    Trigger,
    idempotency_key,
)
from tandem_shared.sync.rules import (
    CLOCK_UNCERTAINTY_MS,
    EMPTY_DIGEST,
    RecentWrite,
    SideState,
    content_fingerprint,
    field_digest,
    proven_older,
    ts_ms,
)


def _a(system: System) -> str:
    return f"an {system.label}" if system is System.ACCESSPLANIT else f"a {system.label}"


def _when(moment_ms: int) -> str:
    return datetime.fromtimestamp(moment_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _when_ms(moment_ms: int) -> str:
    return datetime.fromtimestamp(moment_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


@dataclass
class _SourceAnalysis:
    changed: set[str] = field(default_factory=set)
    stale: set[str] = field(default_factory=set)
    echoed: set[str] = field(default_factory=set)
    # Changed fields whose previous value Tandem wrote after this change happened: the write may have replaced it.
    overwritten: set[str] = field(default_factory=set)
    # Changed fields not provably later than the value known (clock uncertainty): sent with a source check.
    ambiguous: set[str] = field(default_factory=set)
    # Tandem's writes of other values to the source, in flight ("field|digest" → decided at): they land after it.
    in_flight: dict[str, int] = field(default_factory=dict)
    # Overwritten field → digests of Tandem's writes that may have landed over the change (what a repair checks).
    raced: dict[str, set[str]] = field(default_factory=dict)
    effective_ts: dict[str, int] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)


def _analyse_source(
    source: System, digests: dict[str, str], state: SideState | None, event_ts: int, by_tandem_possible: bool
) -> _SourceAnalysis:
    """Which of the source's fields carry something new, relative to what Tandem knows the source held."""
    result = _SourceAnalysis()
    for name, digest in digests.items():
        known = state.fields.get(name) if state else None
        recent = state.written_recently(name, digest) if state and by_tandem_possible else None
        replaced = state.replaced_at(name, digest) if state else None
        if state is None:
            result.changed.add(name)
            result.effective_ts[name] = event_ts
        elif known is not None and known.digest == digest:
            result.effective_ts[name] = known.ts_ms
        elif known is None and digest == EMPTY_DIGEST:
            result.effective_ts[name] = 0
        elif recent is not None:
            result.echoed.add(name)
            result.effective_ts[name] = recent.source_ts_ms
            result.reasons.append(f"{name}: echo of Tandem's write {_write_text(recent)}")
        elif replaced is not None and replaced > event_ts:
            # The value Tandem's write replaced, in a record read before that write: the field did not change.
            result.stale.add(name)
            result.reasons.append(
                f"{name} not sent: the value Tandem's write recorded at {_when_ms(replaced)} replaced, read from "
                f"{source.label} before that write (this change is from {_when_ms(event_ts)})"
            )
        elif known is not None and proven_older(source, event_ts, known.ts_ms):
            result.stale.add(name)
            result.reasons.append(
                f"{name} not sent: older than the value already applied ({source.label}'s change from "
                f"{_when(event_ts)} is before the {_origin_text(known.origin)} from {_when_ms(known.ts_ms)})"
            )
        elif known is not None and (
            known.ts_ms > event_ts or (known.ts_ms == event_ts and CLOCK_UNCERTAINTY_MS[source] > 0)
        ):
            # Later than this change's stamp, or the same coarse stamp (two edits in one second may be delivered in
            # either order): only the source can say which value is its latest.
            result.changed.add(name)
            result.ambiguous.add(name)
            # Tandem received it after the value it raced: within the clock's uncertainty that order decides.
            result.effective_ts[name] = known.ts_ms + 1
            result.reasons.append(
                f"{name}: {source.label}'s change is stamped {_when(event_ts)} (its clock has "
                f"{CLOCK_UNCERTAINTY_MS[source]} ms resolution), within that of the {_origin_text(known.origin)} "
                f"from {_when_ms(known.ts_ms)}, and its value differs from everything Tandem wrote: not provably "
                f"older, so it is re-read from {source.label} before it is written"
            )
        else:
            result.changed.add(name)
            result.effective_ts[name] = event_ts
            write = state.written_recently(name, known.digest) if state and known else None
            if known is not None and known.origin == "written" and write and write.recorded_ms > event_ts:
                result.overwritten.add(name)
                result.raced.setdefault(name, set()).add(known.digest)
            pending = state.in_flight(name, digest, event_ts - IN_FLIGHT_MS) if state else {}
            if pending:
                # Decided from the other side and not landed yet: it lands over this change.
                result.overwritten.add(name)
                result.in_flight.update(pending)
                result.raced.setdefault(name, set()).update(key.split("|", 1)[1] for key in pending)
                result.reasons.append(
                    f"{name} changed in {source.label} while Tandem's write of another value to it was in flight "
                    "(it lands after this change): this change is written back once that write has landed"
                )
    return result


# How long a write decided by the mapper and not recorded by the writer counts as in flight: writes land within a
# second or two; a mark older than this is one whose write was folded into another, superseded or failed.
IN_FLIGHT_MS = 10_000


def _write_text(write: RecentWrite) -> str:
    return f"recorded at {_when_ms(write.recorded_ms)} (of the change from {_when_ms(write.source_ts_ms)})"


def _origin_text(origin: str) -> str:
    return "value Tandem wrote" if origin == "written" else "change already seen"


def _holds(state: SideState | None) -> bool:
    """Whether Tandem knows the side holds the contact: it saw or recorded a field, or a user, there. Notes alone
    are writes decided and not recorded (`expect_write`), such as a user still to be created by a change that may
    have overtaken an address change to it (`SyncCommand.may_precede_move`), waiting for it: a later change there
    waits too, and the address change moves the user there all the same."""
    return state is not None and (bool(state.fields) or state.user_id is not None)


def _may_precede_move(event: ChangeEvent, instance: InstanceConfig) -> bool:
    """A Mailchimp change of a member that existed before it (a profile change; not a subscribe, a new member, nor
    a reconciliation's difference, read from both sides at once): at an address new to Tandem, it may be about a
    contact whose address change (its upemail, keyed by the old address) Tandem has not decided yet. Not where
    address changes make new contacts anyway (`EmailChangePolicy.NEW_CONTACT`)."""
    return (
        event.source is System.MAILCHIMP
        and event.kind is ChangeKind.UPDATED
        and event.trigger is not Trigger.RECONCILE
        and instance.email_change_policy is not EmailChangePolicy.NEW_CONTACT
    )


def _skip(summary: str, logs: list[str], updates: list[StateUpdate]) -> Decision:
    return Decision(TraceStatus.SKIPPED, summary, changes_detected=False, logs=logs, updates=updates)


def decide(
    event: ChangeEvent, instance: InstanceConfig, known: Knowledge, *, command_id: str, now: datetime
) -> Decision:
    flow = event.flow
    source, target = event.source, event.source.other
    if not instance.direction.allows(flow):
        return _skip(f"{flow.label} is not synced by this instance ({instance.direction})", [], [])
    if event.kind is ChangeKind.DELETED:
        return _skip(f"Deletes are not synced: the contact is kept in {target.label}", [], [])
    if event.kind in (ChangeKind.UNSUBSCRIBED, ChangeKind.CLEANED):
        return _skip(
            f"Mailchimp {event.kind.value} is not written to accessplanit: the opt-out stays in Mailchimp", [], []
        )
    email = event_email(event)
    if email is None:
        who = "User" if source is System.ACCESSPLANIT else "Contact"
        error = ErrorInfo(
            error_class="MissingEmail",
            message=f"{who} has no email address",
            permanent=True,
            field="Email" if source is System.ACCESSPLANIT else "EMAIL",
        )
        return Decision(
            TraceStatus.FAILED, f"Not sent to {target.label}: {error.message}", error=error, changes_detected=True
        )

    logs: list[str] = []
    user_id = event.identity.accessplanit_user_id if source is System.ACCESSPLANIT else None
    remember: list[StateUpdate] = [RememberUserEmail(user_id, email)] if user_id else []
    old = old_address(event, known.previous_email)
    if old and instance.email_change_policy is EmailChangePolicy.NEW_CONTACT:
        logs.append(f"Address changed from {old} to {email}; this instance treats it as a new contact (new_contact)")
        if source is System.MAILCHIMP and not read_record(instance, source, event.fields):
            return _skip(
                f"Email change to {email} not synced (new_contact policy): accessplanit gets a new user for it "
                "at the contact's next change",
                logs,
                [],
            )
        old = None

    # Where the source's knowledge lives: still at the old address unless this change was seen (or written) already.
    source_already_moved = old is not None and known.source is not None and known.source_old is None
    source_state = known.source if old is None or source_already_moved else known.source_old
    email_is_news = old is not None and not source_already_moved

    record = read_record(instance, source, event.fields)
    digests = {name: field_digest(value) for name, value in record.items()}
    event_ts = ts_ms(event.occurred_at)
    integration_user = instance.accessplanit.integration_user_id
    by_tandem_possible = source is System.MAILCHIMP or (
        integration_user is not None and event.updated_by_id == integration_user
    )
    analysis = _analyse_source(source, digests, source_state, event_ts, by_tandem_possible)

    updates: list[StateUpdate] = []
    if email_is_news and old is not None:
        updates.append(MoveState(source, old, email, event_ts))
    seen = digests if source_state is None else {n: digests[n] for n in analysis.changed - analysis.ambiguous}
    if seen or source_state is None:
        updates.append(MergeSeen(source, email, seen, event_ts))
    for name in sorted(analysis.ambiguous):
        updates.append(MergeSeen(source, email, {name: digests[name]}, analysis.effective_ts[name]))
    updates.extend(remember)
    logs.extend(analysis.reasons)

    nothing_new = source_state is not None and not analysis.changed and not email_is_news
    tandems = source_state is not None and (source_state.last_origin == "written" or bool(analysis.echoed))
    if nothing_new and by_tandem_possible and tandems:
        summary = f"Echo of Tandem's own write to {source.label}: not sent back"
        if analysis.stale:
            summary += f" ({', '.join(sorted(analysis.stale))} older than the values already applied)"
        return _skip(summary, logs, updates)

    operation = Operation.UPSERT
    target_state = known.target
    # The target moved the contact too, by a change of its own that the clocks prove later than this one: it wins
    # whatever the order Tandem received them in, and its address is written back to this side.
    moved_back: tuple[str, int] | None = None  # (address, when)
    # The target's own address for the contact: the change's, unless the target refused to move it there.
    target_email, moved_from = email, old
    if known.target_at is not None:
        target_email = known.target_at
        # Both sides' records of where the other holds the contact live on while it is synced through them.
        updates.append(HoldAt(target, email, target_email))
        updates.append(HoldAt(source, target_email, email))
        logs.append(
            f"{target.label} holds this contact at {target_email} and {source.label} at {email}: Mailchimp refused "
            f"to change its address (the refused change's trace says why), so {target_email} is written"
        )
    elif known.target_moved_to is not None and old is None:
        target_email = known.target_moved_to
        logs.append(
            f"{target.label} moved this contact from {email} to {target_email} while this change, made at {email}, "
            f"was on its way (Tandem's forward pointer from {email}): {target_email} is written"
        )
    elif old is not None:
        if known.target is not None and known.target_old is None:
            logs.append(f"{target.label} already has the new address {email}")
        elif _holds(known.target) and known.target_old is not None:
            logs.append(f"{target.label} has both {old} and {email}; {email} is updated, {old} is left as it is")
        else:
            operation = Operation.CHANGE_EMAIL
            target_state = known.target_old
            if known.target_old_at is not None:
                moved_from = known.target_old_at
                logs.append(
                    f"{target.label} holds this contact at {moved_from} (it refused to change it to {old}): the "
                    f"change to {email} is asked of {moved_from}"
                )
            elif (moved_back := _later_move(source, event_ts, known)) is not None:
                target_email, moved_at = moved_back
                operation, moved_from = Operation.UPSERT, None
                logs.append(
                    f"{target.label} moved this contact from {old} to {target_email} by an address change of its own "
                    f"from {_when_ms(moved_at)}, later than this change to {email} (from {_when_ms(event_ts)}) by "
                    f"more than the clocks' uncertainty: {target.label}'s address wins, so {target_email} is written "
                    f"back to {source.label}"
                )
            elif known.target_old_moved_to is not None:
                moved_from = known.target_old_moved_to
                logs.append(
                    f"{target.label} moved this contact from {old} to {moved_from} by an address change of its own, "
                    f"received before this one: of two address changes at once the one received later wins, so the "
                    f"change to {email} is asked of {moved_from}"
                )

    values, notes = map_record(instance, flow, record)
    logs.extend(notes)
    included: dict[str, Any] = {}
    to_check: dict[str, CheckedField] = {}
    conflicts: list[str] = []
    lost: set[str] = set()  # source fields whose value lost a conflict: never written back
    for value in values:
        if value.source_field in analysis.stale or value.source_field in analysis.echoed:
            continue
        held = target_state.fields.get(value.target_field) if target_state else None
        digest = field_digest(value.value)
        if held is not None and held.digest == digest:
            continue
        if held is None and digest == EMPTY_DIGEST:
            # Never blank a field whose value on the target Tandem has not seen (a record it has not seen yet, or a
            # mapping added since): an empty source value there is no news, and the target may hold data.
            continue
        effective = analysis.effective_ts.get(value.source_field, event_ts)
        if held is not None and held.origin == "written":
            # The target's value came from this same side through Tandem: the side's own later changes replace it
            # (Mailchimp's timestamps have whole seconds, so two of its changes can carry the same one).
            if held.ts_ms > effective:
                continue
        elif held is not None and (held.ts_ms > effective or (held.ts_ms == effective and source is System.MAILCHIMP)):
            conflicts.append(
                f"Conflict on {value.target_field}: {target.label}'s change from {_when(held.ts_ms)} wins over "
                f"{source.label}'s {value.source_field} from {_when_ms(effective)} (value not sent): it is not "
                "older; the later change wins, accessplanit's on a tie"
            )
            lost.add(value.source_field)
            continue
        included[value.target_field] = value.value
        if value.source_field in analysis.ambiguous:
            to_check[value.target_field] = CheckedField(
                source_field=value.source_field, digest=digests[value.source_field]
            )
    logs.extend(conflicts)

    repair = None
    if analysis.overwritten - lost and old is None:
        repaired = {name: record[name] for name in sorted(analysis.overwritten - lost)}
        logs.append(
            f"{', '.join(repaired)} changed in {source.label} before Tandem's write of an older value landed there; "
            f"the later value is written back to {source.label}"
        )
        repair = _command(
            event,
            source,
            Operation.UPSERT,
            email,
            None,
            build_payload(instance, source, email, repaired),
            command_id=f"{command_id}-repair",
            now=now,
        )
        waits = {key: noted for key, noted in analysis.in_flight.items() if key.split("|", 1)[0] in repaired}
        # Whether Tandem's write landed over the change (or before it) only the side itself can say: the writer
        # reads it once that write has landed and writes back only what it overwrote (docs/convergence.md).
        raced = {
            name: CheckedField(source_field=name, digest=digests[name], raced=sorted(analysis.raced.get(name, ())))
            for name in repaired
        }
        check = SourceCheck(system=source, email=email, fields=raced, ts_ms=event_ts)
        repair = repair.model_copy(update={"waits_for": waits, "source_check": check, "write_back": True})

    if moved_back is not None:
        repair = _address_written_back(event, instance, email, *moved_back, command_id=command_id, now=now)

    if target is System.ACCESSPLANIT:
        creating = target_state is None and operation is Operation.UPSERT
        checked = {v.target_field: v.value for v in values} if creating else included
        problem = accessplanit_problem(checked, source_names(instance, flow), creating=creating)
        if problem is not None:
            return Decision(
                TraceStatus.FAILED,
                f"Not sent to accessplanit: {problem.message}",
                error=problem,
                changes_detected=True,
                logs=logs,
                updates=updates,
            )

    if not included and operation is Operation.UPSERT:
        summary = f"No changes detected: {target.label} already holds these values"
        if conflicts:
            summary = f"Nothing to send to {target.label}: its later changes win ({len(conflicts)} conflict(s))"
        if repair is None:
            return _skip(summary, logs, updates)
        if moved_back is not None:
            summary = f"{target.label}'s later address {target_email} wins over this change to {email}"
        return Decision(
            TraceStatus.SUCCEEDED,
            f"{summary}; written back to {source.label}",
            repair=repair,
            changes_detected=True,
            logs=logs,
            updates=updates,
        )

    payload = build_payload(instance, target, target_email, included)
    command = _command(event, target, operation, target_email, moved_from, payload, command_id=command_id, now=now)
    if target is System.ACCESSPLANIT and target_state is not None and target_state.user_id is not None:
        # The user to write should accessplanit have moved it from this address meanwhile (its move on its way).
        command = command.model_copy(update={"target_user_id": target_state.user_id})
    if target is System.MAILCHIMP and operation is Operation.CHANGE_EMAIL and target_state is not None:
        # Not a contact new to Mailchimp: missing at both addresses, it was moved or removed there meanwhile.
        command = command.model_copy(update={"known_at_old": True})
    if operation is Operation.UPSERT and not _holds(target_state) and _may_precede_move(event, instance):
        # Mailchimp's address change moving a known contact here may still be on its way: the writer waits for it
        # before it creates a user. So does a later change there while the first one's write is only noted.
        command = command.model_copy(update={"may_precede_move": True})
    if to_check:
        # The change is ordered just after the value it raced (see `_analyse_source`).
        check_ts = max(analysis.effective_ts[c.source_field] for c in to_check.values())
        command = command.model_copy(
            update={
                "source_check": SourceCheck(system=source, email=email, fields=to_check, ts_ms=check_ts),
                "source_occurred_at": datetime.fromtimestamp(check_ts / 1000, UTC),
            }
        )
    fields_text = ", ".join(included) or "no other fields"
    if operation is Operation.CHANGE_EMAIL:
        summary = f"Mapped to {_a(target)} email change {moved_from} → {email} ({fields_text})"
    else:
        summary = f"Mapped to {_a(target)} upsert of {target_email} ({fields_text})"
    if conflicts:
        summary += f"; {len(conflicts)} field(s) kept from {target.label}'s later change"
    if repair is not None:
        summary += f"; written back to {source.label}"
    return Decision(
        TraceStatus.SUCCEEDED,
        summary,
        command=command,
        repair=repair,
        changes_detected=True,
        logs=logs,
        updates=updates,
    )


def _later_move(source: System, event_ts: int, known: Knowledge) -> tuple[str, int] | None:
    """Where and when the target moved the contact by its own address change, when that change is provably later
    than this one (by this change's clock's uncertainty); None when the clocks cannot order them (the change received
    later wins) or the target did not move it."""
    moved_to, moved_at = known.target_old_moved_to, known.target_old_moved_at
    if moved_to is None or moved_at is None or not proven_older(source, event_ts, moved_at):
        return None
    return moved_to, moved_at


def _address_written_back(
    event: ChangeEvent,
    instance: InstanceConfig,
    email: str,
    moved_to: str,
    moved_ms: int,
    *,
    command_id: str,
    now: datetime,
) -> SyncCommand:
    """The source's address change from `email` to the target's later one (accessplanit: of the same user)."""
    source = event.source
    command = _command(
        event,
        source,
        Operation.CHANGE_EMAIL,
        moved_to,
        email,
        build_payload(instance, source, moved_to, {}),
        command_id=f"{command_id}-repair",
        now=now,
    )
    # As of the target's move, which the source then holds too (the pointer the write leaves keeps that time).
    return command.model_copy(
        update={"write_back": True, "source_occurred_at": datetime.fromtimestamp(moved_ms / 1000, UTC)}
    )


def _command(
    event: ChangeEvent,
    target: System,
    operation: Operation,
    email: str,
    old: str | None,
    payload: dict[str, Any],
    *,
    command_id: str,
    now: datetime,
) -> SyncCommand:
    identity = event.identity.model_copy(
        update={"email": email, "old_email": old if operation is Operation.CHANGE_EMAIL else event.identity.old_email}
    )
    fp = content_fingerprint(target, payload)
    return SyncCommand(
        command_id=command_id,
        execution_id=event.execution_id,
        original_execution_id=event.original_execution_id,
        event_id=event.event_id,
        instance_id=event.instance_id,
        target=target,
        operation=operation,
        identity=identity,
        payload=payload,
        fingerprint=fp,
        idempotency_key=idempotency_key(event.instance_id, target, identity.contact_key, operation, fp),
        trigger=event.trigger,
        source_occurred_at=event.occurred_at,
        created_at=now,
    )
