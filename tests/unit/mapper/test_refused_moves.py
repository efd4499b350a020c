"""A contact whose email change Mailchimp refused is judged on the address each side holds (pure).

accessplanit holds Ada at new@example.com, Mailchimp keeps her at ada@example.com (its member is unsubscribed, so
the address change was refused). The writer recorded each side's address in the other's state; later changes go
between those two addresses — never a member created at the new address, nor a user at the old one.
"""

from __future__ import annotations

from unit.mapper.test_domain import AP_HOLDS, MC_HOLDS, T0, ap_event, instance, mc_event, run, side

from tandem_mapper.domain import knowledge
from tandem_mapper.domain.model import HoldAt, Knowledge
from tandem_shared.contracts import Operation, System
from tandem_shared.sync.rules import HELD_AT_FIELD, SideState, StateSnapshot, parse_state, side_key

OLD, NEW, NEWER = "ada@example.com", "new@example.com", "newer@example.com"


def held_at(address: str) -> SideState:
    state = parse_state({HELD_AT_FIELD: address})
    assert state is not None and state.held_at == address
    return state


def test_an_accessplanit_change_is_written_to_the_member_at_the_address_mailchimp_kept() -> None:
    known = Knowledge(source=side(AP_HOLDS, at=T0), target=side(MC_HOLDS, at=T0), target_at=OLD)

    decision = run(ap_event(Email=NEW, Forenames="Hedy"), known)

    command = decision.command
    assert command is not None and command.operation is Operation.UPSERT
    assert command.identity.email == OLD and command.payload["email_address"] == OLD
    assert command.payload["merge_fields"] == {"FNAME": "Hedy"}
    assert decision.summary == f"Mapped to a Mailchimp upsert of {OLD} (FNAME)"
    assert HoldAt(System.MAILCHIMP, NEW, OLD) in decision.updates
    assert HoldAt(System.ACCESSPLANIT, OLD, NEW) in decision.updates
    assert (
        f"Mailchimp holds this contact at {OLD} and accessplanit at {NEW}: Mailchimp refused to change its address"
        in decision.logs[0]
    )


def test_a_mailchimp_change_of_the_kept_member_is_written_to_the_user_at_its_new_address() -> None:
    known = Knowledge(source=side(MC_HOLDS, at=T0), target=side({**AP_HOLDS, "Email": NEW}, at=T0), target_at=NEW)

    decision = run(mc_event(email=OLD, merges={"FNAME": "Hedy"}), known)

    command = decision.command
    assert command is not None and command.target is System.ACCESSPLANIT
    assert command.operation is Operation.UPSERT
    assert command.identity.email == NEW and command.payload["Email"] == NEW
    assert command.payload["Forenames"] == "Hedy"


def test_a_further_address_change_is_asked_of_the_member_where_mailchimp_kept_it() -> None:
    known = Knowledge(
        source=None,
        source_old=side({**AP_HOLDS, "Email": NEW}, at=T0),
        target_old=side(MC_HOLDS, at=T0),
        previous_email=NEW,
        target_old_at=OLD,
    )

    decision = run(ap_event(Email=NEWER), known)

    command = decision.command
    assert command is not None and command.operation is Operation.CHANGE_EMAIL
    assert (command.identity.old_email, command.identity.email) == (OLD, NEWER)
    assert decision.summary.startswith(f"Mapped to a Mailchimp email change {OLD} → {NEWER}")


def test_the_state_where_a_side_holds_the_contact_instead_is_read_and_handed_to_the_decision() -> None:
    config = instance()
    work = [(ap_event(Email=NEW), config)]
    first = StateSnapshot(
        sides={
            side_key("demo", System.ACCESSPLANIT, NEW): side(AP_HOLDS, at=T0),
            side_key("demo", System.MAILCHIMP, NEW): held_at(OLD),
        },
        user_emails={("demo", "7"): NEW},
        backlogs={},
    )

    assert knowledge.missing(work, first) == [("demo", System.MAILCHIMP, OLD)]

    kept = side(MC_HOLDS, at=T0)
    loaded = first.extend(StateSnapshot({side_key("demo", System.MAILCHIMP, OLD): kept}, {}, {}))
    assert knowledge.missing(work, loaded) == []
    known = knowledge.knowledge(work, loaded)["e-ap"]
    assert known.target == kept and known.target_at == OLD


def test_a_further_address_change_reads_where_mailchimp_kept_the_contact_in_a_second_further_read() -> None:
    config = instance()
    work = [(ap_event(Email=NEWER), config)]
    first = StateSnapshot(
        sides={
            side_key("demo", System.ACCESSPLANIT, NEWER): None,
            side_key("demo", System.MAILCHIMP, NEWER): None,
        },
        user_emails={("demo", "7"): NEW},
        backlogs={},
    )
    assert knowledge.missing(work, first) == [("demo", System.ACCESSPLANIT, NEW), ("demo", System.MAILCHIMP, NEW)]

    old_address = StateSnapshot(
        {
            side_key("demo", System.ACCESSPLANIT, NEW): side({**AP_HOLDS, "Email": NEW}, at=T0),
            side_key("demo", System.MAILCHIMP, NEW): held_at(OLD),
        },
        {},
        {},
    )
    second = first.extend(old_address)
    assert knowledge.missing(work, second) == [("demo", System.MAILCHIMP, OLD)]

    kept = side(MC_HOLDS, at=T0)
    loaded = second.extend(StateSnapshot({side_key("demo", System.MAILCHIMP, OLD): kept}, {}, {}))
    known = knowledge.knowledge(work, loaded)["e-ap"]
    assert known.target_old == kept and known.target_old_at == OLD and known.target_at is None
