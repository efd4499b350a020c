"""A Mailchimp profile change that overtook its member's address change (issue 15, pure).

Mailchimp moves a member from ada@… to new@… (upemail, keyed by ada@…) and then changes its names (profile, keyed by
new@…). Decided first, the profile change finds no contact at new@… on either side: its command would create a user
there, beside the one the upemail moves there. The command is marked (`SyncCommand.may_precede_move`), and the
writer waits for the move; the upemail, decided while that command is on its way, still moves the user.
"""

from __future__ import annotations

from dataclasses import replace

from unit.mapper.test_domain import AP_HOLDS, MC_HOLDS, T0, T1, ap_event, instance, mc_event, run, side

from tandem_mapper.domain.model import Knowledge
from tandem_shared.contracts import ChangeKind, EmailChangePolicy, Operation, SyncCommand, System, Trigger
from tandem_shared.sync.rules import SideState, field_digest, ts_ms

OLD, NEW = "ada@example.com", "new@example.com"
NAMES = {"FNAME": "Grace", "LNAME": "Hopper"}


def _command(decision: object) -> SyncCommand:
    command = getattr(decision, "command", None)
    assert isinstance(command, SyncCommand), decision
    return command


def test_a_profile_change_at_an_address_tandem_knows_no_one_at_is_marked() -> None:
    command = _command(run(mc_event(email=NEW, merges=NAMES)))

    assert (command.target, command.operation, command.identity.email) == (System.ACCESSPLANIT, Operation.UPSERT, NEW)
    assert command.payload["Forenames"] == "Grace"
    assert command.may_precede_move


def test_a_profile_change_known_to_mailchimp_only_is_marked_too() -> None:
    """Mailchimp's state at new@… (an earlier profile change there, its user not created yet) says nothing of
    accessplanit: the create may still precede the move."""
    command = _command(run(mc_event(email=NEW, merges=NAMES), Knowledge(source=side(MC_HOLDS, at=T0))))

    assert command.may_precede_move


def test_a_second_profile_change_decided_while_the_first_one_waits_is_marked_too() -> None:
    """Mailchimp's first and last names changed one after the other: the second change finds only the notes of the
    first one's write at new@… (no user known there yet), and would create the user the first one waits with."""
    known = Knowledge(source=side(MC_HOLDS, at=T0), target=_notes_only(("Forenames", "Grace")))

    command = _command(run(mc_event(email=NEW, merges=NAMES), known))

    assert command.operation is Operation.UPSERT
    assert command.may_precede_move


def test_a_new_member_is_not_marked() -> None:
    """A subscribe is a member new to Mailchimp: no address change moves anyone to it."""
    assert not _command(run(mc_event(ChangeKind.CREATED, email=NEW, merges=NAMES))).may_precede_move


def test_a_reconciliation_difference_is_not_marked() -> None:
    """Read from both sides at once: no address change of the contact is on its way."""
    event = mc_event(email=NEW, merges=NAMES).model_copy(update={"trigger": Trigger.RECONCILE})

    assert not _command(run(event)).may_precede_move


def test_an_update_of_a_user_tandem_knows_is_not_marked() -> None:
    known = Knowledge(source=side(MC_HOLDS, at=T0), target=side(AP_HOLDS, at=T0))

    command = _command(run(mc_event(email=OLD, merges=NAMES), known))

    assert command.operation is Operation.UPSERT
    assert not command.may_precede_move


def test_a_change_where_address_changes_make_new_contacts_is_not_marked() -> None:
    config = instance(email_change_policy=EmailChangePolicy.NEW_CONTACT)

    assert not _command(run(mc_event(email=NEW, merges=NAMES), config=config)).may_precede_move


def test_an_accessplanit_change_is_not_marked() -> None:
    assert not _command(run(ap_event(ChangeKind.CREATED))).may_precede_move


def _notes_only(*values: tuple[str, str]) -> SideState:
    """accessplanit's state at new@… once the mapper sent the marked command: its notes of the write, no field."""
    marks = {f"{name}|{field_digest(value)}": ts_ms(T1) for name, value in values}
    return SideState({}, "seen", 0, pending_writes=marks)


def test_the_address_change_decided_after_it_still_moves_the_user() -> None:
    """The marked command's notes at new@… are no user there: the upemail moves the user from ada@…, rather than
    leaving it there beside the one the profile change would create."""
    known = Knowledge(
        source=side(MC_HOLDS, at=T1),  # merged from the profile change, decided first
        source_old=side(MC_HOLDS, at=T0),
        target=_notes_only(("Forenames", "Grace"), ("Surname", "Hopper")),
        target_old=replace(side(AP_HOLDS, at=T0), user_id="7"),
    )

    decision = run(mc_event(ChangeKind.EMAIL_CHANGED, email=NEW, old_email=OLD), known)

    command = _command(decision)
    assert command.operation is Operation.CHANGE_EMAIL
    assert (command.identity.old_email, command.identity.email) == (OLD, NEW)
    assert command.target_user_id == "7"
    assert not command.may_precede_move


def test_a_user_tandem_knows_at_both_addresses_is_left_as_it_was() -> None:
    known = Knowledge(
        source=side(MC_HOLDS, at=T1),
        source_old=side(MC_HOLDS, at=T0),
        target=side(AP_HOLDS, at=T1),
        target_old=side(AP_HOLDS, at=T0),
    )

    decision = run(mc_event(ChangeKind.EMAIL_CHANGED, email=NEW, old_email=OLD), known)

    assert f"accessplanit has both {OLD} and {NEW}; {NEW} is updated, {OLD} is left as it is" in decision.logs
    assert decision.command is None or decision.command.operation is Operation.UPSERT
