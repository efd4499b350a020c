"""A change still naming an address its contact has moved from (pure): found at the new address (issue 15).

Ada moves from ada@example.com to new@example.com in accessplanit while a Mailchimp edit of her member at the old
address is on its way (`EDIT_AT_THE_OLD_ADDRESS`, `MOVE_UNDER_AN_EDIT` in the property test). The move renamed
accessplanit's state and left a forward pointer at the old address; the edit is written to the user at the new one.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from unit.mapper.test_domain import AP_HOLDS, MC_HOLDS, T0, T1, ap_event, instance, mc_event, run, side

from tandem_mapper.domain import knowledge
from tandem_mapper.domain.model import Knowledge
from tandem_shared.contracts import ChangeKind, Operation, System
from tandem_shared.sync.rules import Pointer, StateSnapshot, side_key, ts_ms

OLD, NEW = "ada@example.com", "new@example.com"


def test_a_mailchimp_change_at_the_old_address_is_written_to_the_user_at_the_new_one() -> None:
    moved = replace(side({**AP_HOLDS, "Email": NEW}, at=T0), user_id="7")
    known = Knowledge(source=side(MC_HOLDS, at=T0), target=moved, target_moved_to=NEW)

    decision = run(mc_event(email=OLD, merges={"LNAME": "Byron"}), known)

    command = decision.command
    assert command is not None and command.target is System.ACCESSPLANIT
    assert command.operation is Operation.UPSERT
    assert command.identity.email == NEW and command.payload["Email"] == NEW
    assert command.payload["Surname"] == "Byron"
    assert command.target_user_id == "7"
    assert (
        f"accessplanit moved this contact from {OLD} to {NEW} while this change, made at {OLD}, was on its way "
        f"(Tandem's forward pointer from {OLD}): {NEW} is written"
    ) in decision.logs


def test_a_command_for_accessplanit_names_the_user_last_seen_at_its_address() -> None:
    known = Knowledge(source=side(MC_HOLDS, at=T0), target=replace(side(AP_HOLDS, at=T0), user_id="7"))

    decision = run(mc_event(email=OLD, merges={"LNAME": "Byron"}), known)

    assert decision.command is not None and decision.command.identity.email == OLD
    assert decision.command.target_user_id == "7"


def _first_read(*, source_known: bool) -> StateSnapshot:
    return StateSnapshot(
        sides={
            side_key("demo", System.MAILCHIMP, OLD): side(MC_HOLDS, at=T0) if source_known else None,
            side_key("demo", System.ACCESSPLANIT, OLD): None,
        },
        user_emails={},
        backlogs={},
        moves={side_key("demo", System.ACCESSPLANIT, OLD): Pointer(NEW)},
    )


def test_the_forward_pointer_is_followed_in_a_further_read_and_handed_to_the_decision() -> None:
    work = [(mc_event(email=OLD, merges={"LNAME": "Byron"}), instance())]
    first = _first_read(source_known=True)

    assert knowledge.missing(work, first) == [("demo", System.ACCESSPLANIT, NEW)]

    there = side({**AP_HOLDS, "Email": NEW}, at=T0)
    loaded = first.extend(StateSnapshot({side_key("demo", System.ACCESSPLANIT, NEW): there}, {}, {}))
    assert knowledge.missing(work, loaded) == []
    known = next(iter(knowledge.knowledge(work, loaded).values()))
    assert known.target == there and known.target_moved_to == NEW


def test_a_contact_the_source_does_not_know_at_the_address_is_not_forwarded() -> None:
    """Someone given the old address since (a new member there) is a new contact, not the one that moved."""
    work = [(mc_event(email=OLD, merges={"LNAME": "Byron"}), instance())]
    first = _first_read(source_known=False)

    assert knowledge.missing(work, first) == []
    known = next(iter(knowledge.knowledge(work, first).values()))
    assert known.target is None and known.target_moved_to is None


def test_of_two_address_changes_at_once_the_one_received_later_is_asked_of_the_address_the_other_moved_to() -> None:
    """`BOTH_SIDES_MOVE`: Mailchimp's change to mc@… was received (and its member's state moved there) before
    accessplanit's change of the same address to new@…: accessplanit's wins, and is asked of the member at mc@…
    (never an upsert of new@…, a second member)."""
    moved = side(MC_HOLDS, at=T0)
    known = Knowledge(
        source_old=side(AP_HOLDS, at=T0),
        target_old=moved,
        previous_email=OLD,
        target_old_moved_to="mc@example.com",
    )

    decision = run(ap_event(Email=NEW), known)

    command = decision.command
    assert command is not None and command.operation is Operation.CHANGE_EMAIL
    assert (command.identity.old_email, command.identity.email) == ("mc@example.com", NEW)
    assert command.payload["merge_fields"] == {}  # the member at mc@… holds the rest already
    assert (
        f"Mailchimp moved this contact from {OLD} to mc@example.com by an address change of its own, received before "
        f"this one: of two address changes at once the one received later wins, so the change to {NEW} is asked of "
        "mc@example.com"
    ) in decision.logs


def test_the_pointer_of_the_change_s_own_move_is_not_taken_for_another() -> None:
    """The echo of Tandem's own move (Mailchimp's upemail old → new after Tandem moved the member): accessplanit's
    pointer names the same new address, not a move of its own to a third."""
    work = [(mc_event(ChangeKind.EMAIL_CHANGED, email=NEW, old_email=OLD), instance())]
    loaded = StateSnapshot(
        sides={
            side_key("demo", System.MAILCHIMP, NEW): side(MC_HOLDS, at=T0),
            side_key("demo", System.ACCESSPLANIT, NEW): side(AP_HOLDS, at=T0),
            side_key("demo", System.MAILCHIMP, OLD): None,
            side_key("demo", System.ACCESSPLANIT, OLD): None,
        },
        user_emails={},
        backlogs={},
        moves={
            side_key("demo", System.ACCESSPLANIT, OLD): Pointer(NEW),
            side_key("demo", System.MAILCHIMP, OLD): Pointer(NEW),
        },
    )

    assert knowledge.missing(work, loaded) == []
    known = next(iter(knowledge.knowledge(work, loaded).values()))
    assert known.target_old is None and known.target_old_moved_to is None


def test_an_email_change_for_mailchimp_says_whether_tandem_knew_the_member_at_the_old_address() -> None:
    """Missing at both addresses, a member Tandem knew was moved or removed in Mailchimp meanwhile (both sides
    changed the address at once): the writer then creates none. One never synced is created as before."""
    synced = Knowledge(source_old=side(AP_HOLDS), target_old=side(MC_HOLDS), previous_email="ada@old.example")
    never = Knowledge(previous_email="ada@old.example")

    known_there, not_known = run(ap_event(), synced).command, run(ap_event(), never).command

    assert known_there is not None and known_there.operation is Operation.CHANGE_EMAIL
    assert known_there.known_at_old
    assert not_known is not None and not_known.operation is Operation.CHANGE_EMAIL
    assert not not_known.known_at_old


# Two address changes at once whose clocks tell them apart: the later one wins whichever Tandem received first.
MC_NEW, AP_NEW = "mc@example.com", "ap@example.com"


def test_an_address_change_older_than_the_other_sides_move_gets_that_sides_address_written_back() -> None:
    """accessplanit changed the address at T1; its delivery waited for the catch-up read, so Mailchimp's change to
    mc@… five seconds later was received (and applied there) first. Mailchimp's address wins and is written back
    to the same accessplanit user; no second member is asked for."""
    moved_at = ts_ms(T1) + 5_000
    known = Knowledge(
        source_old=side(AP_HOLDS, at=T0),
        target_old=side(MC_HOLDS, at=T0),
        previous_email=OLD,
        target_old_moved_to=MC_NEW,
        target_old_moved_at=moved_at,
    )

    decision = run(ap_event(Email=NEW), known)

    assert decision.command is None  # the member at mc@… holds everything else already
    back = decision.repair
    assert back is not None and back.target is System.ACCESSPLANIT and back.write_back
    assert back.operation is Operation.CHANGE_EMAIL
    assert (back.identity.old_email, back.identity.email) == (NEW, MC_NEW)
    assert back.identity.accessplanit_user_id == "7" and back.payload == {"Email": MC_NEW}
    assert ts_ms(back.source_occurred_at) == moved_at
    assert (
        decision.summary == f"Mailchimp's later address {MC_NEW} wins over this change to {NEW}; written back to "
        "accessplanit"
    )
    assert any("by more than the clocks' uncertainty: Mailchimp's address wins" in line for line in decision.logs)


def _accessplanit_moved(after_ms: int) -> Knowledge:
    """Mailchimp knows the member at OLD; accessplanit moved user 7 from OLD to AP_NEW `after_ms` after T1."""
    return Knowledge(
        source_old=side(MC_HOLDS, at=T0),
        target_old=replace(side({**AP_HOLDS, "Email": AP_NEW}, at=T0), user_id="7"),
        target_old_moved_to=AP_NEW,
        target_old_moved_at=ts_ms(T1) + after_ms,
    )


def test_a_mailchimp_address_change_older_than_accessplanits_move_gets_accessplanits_address() -> None:
    """The other way round: Mailchimp's upemail (whole seconds) is received after accessplanit's later move."""
    decision = run(mc_event(ChangeKind.EMAIL_CHANGED, email=NEW, old_email=OLD), _accessplanit_moved(2_000))

    back = decision.repair
    assert back is not None and back.target is System.MAILCHIMP and back.write_back
    assert back.operation is Operation.CHANGE_EMAIL
    assert (back.identity.old_email, back.identity.email) == (NEW, AP_NEW)
    assert decision.command is None


def test_address_changes_within_the_clocks_uncertainty_are_ordered_by_receipt() -> None:
    """Mailchimp's stamp has whole seconds: accessplanit's move 0.5 s after it is not provably later, so the change
    received later (Mailchimp's) wins as before and is asked of the member's new place in accessplanit."""
    decision = run(mc_event(ChangeKind.EMAIL_CHANGED, email=NEW, old_email=OLD), _accessplanit_moved(500))

    assert decision.repair is None
    command = decision.command
    assert command is not None and command.operation is Operation.CHANGE_EMAIL
    assert (command.identity.old_email, command.identity.email) == (AP_NEW, NEW)


def test_a_later_change_than_the_other_sides_move_still_wins() -> None:
    known = Knowledge(
        source_old=side(AP_HOLDS, at=T0),
        target_old=side(MC_HOLDS, at=T0),
        previous_email=OLD,
        target_old_moved_to=MC_NEW,
        target_old_moved_at=ts_ms(T1 - timedelta(seconds=5)),
    )

    decision = run(ap_event(Email=NEW), known)

    assert decision.repair is None
    assert decision.command is not None and decision.command.operation is Operation.CHANGE_EMAIL
    assert (decision.command.identity.old_email, decision.command.identity.email) == (MC_NEW, NEW)


def test_the_pointer_hands_the_decision_when_the_other_side_moved() -> None:
    work = [(ap_event(Email=NEW), instance())]
    moved_at = ts_ms(T1) + 5_000
    loaded = StateSnapshot(
        sides={
            side_key("demo", System.ACCESSPLANIT, NEW): None,
            side_key("demo", System.MAILCHIMP, NEW): None,
            side_key("demo", System.ACCESSPLANIT, OLD): side(AP_HOLDS, at=T0),
            side_key("demo", System.MAILCHIMP, OLD): None,
            side_key("demo", System.MAILCHIMP, MC_NEW): side(MC_HOLDS, at=T0),
        },
        user_emails={("demo", "7"): OLD},
        backlogs={},
        moves={side_key("demo", System.MAILCHIMP, OLD): Pointer(MC_NEW, moved_at)},
    )

    known = next(iter(knowledge.knowledge(work, loaded).values()))

    assert (known.target_old_moved_to, known.target_old_moved_at) == (MC_NEW, moved_at)


def test_a_pointer_keeps_its_time_and_one_written_without_it_reads_as_unknown() -> None:
    assert Pointer.decode(Pointer("a.b@example.com", 1_764_000_000_123).encode()) == Pointer(
        "a.b@example.com", 1_764_000_000_123
    )
    assert Pointer.decode("a.b@example.com") == Pointer("a.b@example.com")
