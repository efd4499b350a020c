"""An email change Mailchimp refused: the trace says which address each side holds and why, the sync state records
them, and the command fails permanently (no retry: Mailchimp would refuse again)."""

from __future__ import annotations

from fakes.state import InMemoryStateStore
from fakes.target import ScriptedTarget
from support.commands import sync_command
from tandem_shared.contracts import ErrorInfo, Operation, SyncCommand, System
from tandem_shared.instances import demo_instance
from tandem_shared.sync.rules import parse_state
from tandem_writer.domain.outcome import WriteOutcome
from tandem_writer.domain.refused_moves import refused_move
from tandem_writer.refused_moves import RefusedMoves
from tandem_writer.targets.mailchimp_outcomes import email_change_refused, refused

OLD, NEW = "ada@example.com", "new@example.com"
REASON = (
    'This member\'s status is "unsubscribed." You can only update email addresses for members with a status of '
    '"subscribed."'
)


def change(target: System = System.MAILCHIMP) -> SyncCommand:
    payload = {"email_address": NEW, "merge_fields": {"FNAME": "Ada"}} if target is System.MAILCHIMP else {"Email": NEW}
    return sync_command("demo", target, payload, email=NEW, old_email=OLD, operation=Operation.CHANGE_EMAIL)


def test_the_refusal_says_which_address_each_side_holds_and_mailchimps_reason() -> None:
    error = email_change_refused(OLD, NEW, REASON)

    move = refused_move(change(), error)

    assert move is not None and (move.accessplanit_email, move.mailchimp_email) == (NEW, OLD)
    assert move.summary.startswith(
        f"Not moved: accessplanit holds this contact at {NEW}, Mailchimp keeps it at {OLD}, because Mailchimp refused "
        f"the address change ({OLD} was not changed to {NEW}: {REASON}"
    )
    assert move.summary.endswith("Its later changes are synced between these two addresses")


def test_other_failures_are_not_refused_moves() -> None:
    other = ErrorInfo(error_class="RateLimited", message="slow down", permanent=False)
    assert refused_move(change(), other) is None
    assert refused_move(change(), None) is None
    assert refused_move(change(System.ACCESSPLANIT), email_change_refused(OLD, NEW, REASON)) is None


async def test_a_refused_move_is_recorded_on_both_sides_and_stays_a_permanent_failure() -> None:
    error = email_change_refused(OLD, NEW, REASON)
    inner = ScriptedTarget(refused(error), system=System.MAILCHIMP)
    state = InMemoryStateStore()
    target = RefusedMoves(inner, state)

    outcome = await target.write(change(), demo_instance())

    assert not outcome.ok and not outcome.transient
    assert outcome.summary.startswith(f"Not moved: accessplanit holds this contact at {NEW}, Mailchimp keeps it")
    assert outcome.error is not None and outcome.error.message == outcome.summary
    assert (outcome.error.error_class, outcome.error.field) == (error.error_class, error.field)
    mailchimp = parse_state(state.raw("demo", System.MAILCHIMP, NEW))
    accessplanit = parse_state(state.raw("demo", System.ACCESSPLANIT, OLD))
    assert mailchimp is not None and mailchimp.held_at == OLD
    assert accessplanit is not None and accessplanit.held_at == NEW
    # The fields the change carried go to the member where Mailchimp kept the contact, and are recorded there.
    [_, kept] = inner.writes
    assert kept.operation is Operation.UPSERT and kept.identity.email == OLD
    assert kept.payload == {"email_address": OLD, "merge_fields": {"FNAME": "Ada"}}
    assert outcome.summary.endswith(f"; FNAME written to the member at {OLD}")
    member = parse_state(state.raw("demo", System.MAILCHIMP, OLD))
    assert member is not None and member.fields["FNAME"].origin == "written"


async def test_fields_the_kept_member_did_not_take_are_said_so() -> None:
    error = email_change_refused(OLD, NEW, REASON)
    slow = ErrorInfo(error_class="Timeout", message="Mailchimp did not answer", permanent=False)
    inner = ScriptedTarget(refused(error), WriteOutcome(False, "Mailchimp write failed: no answer", error=slow))
    state = InMemoryStateStore()

    outcome = await RefusedMoves(inner, state).write(change(), demo_instance())

    assert not outcome.ok and outcome.error is not None and outcome.error.permanent
    assert outcome.summary.endswith(
        f"; FNAME not written to the member at {OLD} either (Mailchimp write failed: no answer)"
    )
    assert state.raw("demo", System.MAILCHIMP, OLD) == {}


async def test_any_other_outcome_passes_through_and_records_nothing() -> None:
    written = WriteOutcome(True, "Mailchimp member ada@example.com is now new@example.com")
    state = InMemoryStateStore()
    target = RefusedMoves(ScriptedTarget(written, system=System.MAILCHIMP), state)

    assert await target.write(change(), demo_instance()) == written
    assert state.raw("demo", System.MAILCHIMP, NEW) == {}
