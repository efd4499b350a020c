from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tandem_mapper.domain.decision import decide
from tandem_mapper.domain.model import Knowledge, MergeSeen, MoveState, RememberUserEmail
from tandem_shared.contracts import (
    ChangeEvent,
    ChangeKind,
    ContactIdentity,
    Direction,
    EmailChangePolicy,
    FieldMapping,
    InstanceConfig,
    Operation,
    System,
    TraceStatus,
    Transform,
    Trigger,
)
from tandem_shared.instances import demo_instance
from tandem_shared.sync.rules import FieldState, RecentWrite, SideState, content_fingerprint, field_digest, ts_ms

T0 = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=1)
T2 = T0 + timedelta(minutes=2)
INTEGRATION_USER = "900001"
PERSON = "900002"


def instance(**changes: Any) -> InstanceConfig:
    base = demo_instance()
    mappings = [
        *base.mappings,
        FieldMapping(mailchimp="PHONE", accessplanit="Phone", transform=Transform.PHONE),
        FieldMapping(
            mailchimp="COMPANY", accessplanit="custom:Mailchimp Company", direction=Direction.MAILCHIMP_TO_ACCESSPLANIT
        ),
        FieldMapping(mailchimp="BIRTHDAY", accessplanit="custom:Mailchimp Birthday", transform=Transform.BIRTHDAY),
    ]
    return base.model_copy(update={"mappings": mappings, **changes})


def ap_event(
    kind: ChangeKind = ChangeKind.UPDATED,
    *,
    at: datetime = T1,
    updated_by: str = PERSON,
    custom: dict[str, Any] | None = None,
    **fields: Any,
) -> ChangeEvent:
    user = {
        "ID": "7",
        "Forenames": "Ada",
        "Surname": "Lovelace",
        "Email": "ada@example.com",
        "Phone": "0161 496 0000",
        "CustomFields": {"Mailchimp Company": None, "Mailchimp Birthday": "12/10", **(custom or {})},
        "UpdatedByID": updated_by,
        **fields,
    }
    return ChangeEvent(
        event_id="e-ap",
        execution_id="x-ap",
        instance_id="demo",
        source=System.ACCESSPLANIT,
        kind=kind,
        identity=ContactIdentity(accessplanit_user_id="7", email=user["Email"] or None),
        fields=user,
        occurred_at=at,
        received_at=at,
        trigger=Trigger.WEBHOOK,
        updated_by_id=updated_by,
    )


def mc_event(
    kind: ChangeKind = ChangeKind.UPDATED,
    *,
    at: datetime = T1,
    email: str = "ada@example.com",
    old_email: str | None = None,
    merges: dict[str, Any] | None = None,
) -> ChangeEvent:
    """As ingest publishes Mailchimp's webhooks: the merges next to the delivery's own data (upemail: no merges)."""
    if kind is ChangeKind.EMAIL_CHANGED and merges is None:
        fields: dict[str, Any] = {"email": email, "old_email": old_email, "list_id": "a1b2c3d4e5", "id": "51da8c3259"}
    else:
        fields = {
            "id": "8a25ff1d98",
            "list_id": "a1b2c3d4e5",
            "email": email,
            "email_type": "html",
            "EMAIL": email,
            "FNAME": "Ada",
            "LNAME": "Lovelace",
            "PHONE": "0161 496 0000",
            "COMPANY": "",
            "BIRTHDAY": "12/10",
            "INTERESTS": "",
            **(merges or {}),
        }
    return ChangeEvent(
        event_id="e-mc",
        execution_id="x-mc",
        instance_id="demo",
        source=System.MAILCHIMP,
        kind=kind,
        identity=ContactIdentity(email=email, old_email=old_email),
        fields=fields,
        occurred_at=at,
        received_at=at,
        trigger=Trigger.WEBHOOK,
    )


def side(
    values: dict[str, Any],
    *,
    at: datetime = T0,
    origin: str = "seen",
    recent: dict[str, datetime] | None = None,
    changed: dict[str, tuple[Any, datetime]] | None = None,
) -> SideState:
    """What a side holds: `values` set at `at`, and `changed` fields set later (value, when)."""
    fields = {name: FieldState(field_digest(v), ts_ms(at), origin) for name, v in values.items()}  # type: ignore[arg-type]
    for name, (value, when) in (changed or {}).items():
        fields[name] = FieldState(field_digest(value), ts_ms(when), "seen")
    recent_writes = {name: RecentWrite(ts_ms(when), ts_ms(when)) for name, when in (recent or {}).items()}
    return SideState(fields, origin, ts_ms(at), recent_writes)  # type: ignore[arg-type]


MC_HOLDS = {"FNAME": "Ada", "LNAME": "Lovelace", "PHONE": "0161 496 0000", "BIRTHDAY": "12/10"}
AP_HOLDS = {
    "Forenames": "Ada",
    "Surname": "Lovelace",
    "Phone": "0161 496 0000",
    "custom:Mailchimp Company": None,
    "custom:Mailchimp Birthday": "12/10",
}


def run(event: ChangeEvent, known: Knowledge | None = None, config: InstanceConfig | None = None) -> Any:
    return decide(event, config or instance(), known or Knowledge(), command_id="c1", now=T2)


# -- mapping ---------------------------------------------------------------------------------------------------


def test_a_new_accessplanit_user_maps_to_a_mailchimp_upsert_of_every_mapped_field() -> None:
    decision = run(ap_event(ChangeKind.CREATED))
    assert decision.status is TraceStatus.SUCCEEDED
    command = decision.command
    assert command is not None
    assert command.target is System.MAILCHIMP
    assert command.operation is Operation.UPSERT
    assert command.payload == {
        "email_address": "ada@example.com",
        "status_if_new": "subscribed",
        "merge_fields": {"FNAME": "Ada", "LNAME": "Lovelace", "PHONE": "0161 496 0000", "BIRTHDAY": "12/10"},
    }
    assert command.fingerprint == content_fingerprint(System.MAILCHIMP, command.payload)
    assert command.execution_id == "x-ap"
    assert decision.changes_detected is True


def test_what_the_mapper_saw_is_remembered_for_the_next_change() -> None:
    decision = run(ap_event(ChangeKind.CREATED))
    merges = [u for u in decision.updates if isinstance(u, MergeSeen)]
    assert len(merges) == 1
    assert merges[0].system is System.ACCESSPLANIT
    assert merges[0].source_ts_ms == ts_ms(T1)
    assert merges[0].digests["Surname"] == field_digest("Lovelace")
    assert set(merges[0].digests) == set(AP_HOLDS)
    assert RememberUserEmail("7", "ada@example.com") in decision.updates


def test_a_new_mailchimp_contact_maps_to_accessplanit_user_fields_and_custom_fields() -> None:
    decision = run(mc_event(ChangeKind.CREATED, merges={"COMPANY": "Acme", "FNAME": " Ada "}))
    command = decision.command
    assert command is not None
    assert command.target is System.ACCESSPLANIT
    assert command.payload == {
        "Email": "ada@example.com",
        "Forenames": "Ada",
        "Surname": "Lovelace",
        "Phone": "0161 496 0000",
        "CustomFields": {"Mailchimp Company": "Acme", "Mailchimp Birthday": "12/10"},
    }
    assert command.identity.email == "ada@example.com"


def test_same_change_gives_the_same_idempotency_key_and_a_different_value_does_not() -> None:
    one = run(ap_event()).command
    two = run(ap_event()).command
    other = run(ap_event(Surname="Byron")).command
    assert one and two and other
    assert one.idempotency_key == two.idempotency_key
    assert other.idempotency_key != one.idempotency_key


def test_dob_feeds_the_mailchimp_birthday_one_way_with_the_month_and_day_as_written() -> None:
    base = instance()
    one_way = FieldMapping(
        mailchimp="BIRTHDAY",
        accessplanit="DOB",
        direction=Direction.ACCESSPLANIT_TO_MAILCHIMP,
        transform=Transform.BIRTHDAY,
    )
    mappings = [*(m for m in base.mappings if m.mailchimp != "BIRTHDAY"), one_way]
    config = base.model_copy(update={"mappings": mappings})
    # An offset that a conversion to UTC would turn into 9 December: the date as written is kept.
    decision = run(ap_event(ChangeKind.CREATED, DOB="1990-12-10T00:30:00+01:00"), config=config)
    assert decision.command is not None
    assert decision.command.payload["merge_fields"]["BIRTHDAY"] == "12/10"
    assert decision.command.payload["merge_fields"]["PHONE"] == "0161 496 0000"  # PHONE ⇄ Phone
    back = run(mc_event(merges={"BIRTHDAY": "01/02"}), config=config)
    assert back.command is not None
    assert "DOB" not in back.command.payload  # never Mailchimp → accessplanit: a birthday has no year


def test_a_value_a_transform_cannot_convert_is_left_out_and_said_so_while_the_rest_syncs() -> None:
    decision = run(ap_event(custom={"Mailchimp Birthday": "10th December"}))
    assert decision.command is not None
    assert "BIRTHDAY" not in decision.command.payload["merge_fields"]
    assert decision.command.payload["merge_fields"]["FNAME"] == "Ada"
    assert any("BIRTHDAY not sent" in line and "MM/DD" in line for line in decision.logs)


# -- filters and product rules ---------------------------------------------------------------------------------


def test_a_user_without_email_is_a_permanent_failure_with_the_seed_message() -> None:
    decision = run(ap_event(Email=""))
    assert decision.status is TraceStatus.FAILED
    assert decision.command is None
    assert decision.error is not None
    assert decision.error.message == "User has no email address"
    assert decision.error.permanent


@pytest.mark.parametrize("event", [ap_event(ChangeKind.DELETED), mc_event(ChangeKind.DELETED)])
def test_deletes_never_cascade(event: ChangeEvent) -> None:
    decision = run(event)
    assert decision.status is TraceStatus.SKIPPED
    assert decision.command is None
    assert "Deletes are not synced" in decision.summary


@pytest.mark.parametrize("kind", [ChangeKind.UNSUBSCRIBED, ChangeKind.CLEANED])
def test_mailchimp_unsubscribes_and_cleans_are_not_written_to_accessplanit(kind: ChangeKind) -> None:
    decision = run(mc_event(kind))
    assert decision.status is TraceStatus.SKIPPED
    assert decision.command is None
    assert "opt-out stays in Mailchimp" in decision.summary


def test_a_direction_the_instance_does_not_sync_is_skipped_and_said_so() -> None:
    config = instance(direction=Direction.MAILCHIMP_TO_ACCESSPLANIT)
    decision = run(ap_event(), config=config)
    assert decision.status is TraceStatus.SKIPPED
    assert decision.summary == "accessplanit → Mailchimp is not synced by this instance (mailchimp_to_accessplanit)"
    assert decision.changes_detected is False


def test_a_mapping_limited_to_one_direction_is_not_sent_the_other_way() -> None:
    decision = run(ap_event(custom={"Mailchimp Company": "Acme"}))
    assert decision.command is not None
    assert "COMPANY" not in decision.command.payload["merge_fields"]


def test_a_contact_without_a_first_name_cannot_become_an_accessplanit_user() -> None:
    decision = run(mc_event(ChangeKind.CREATED, merges={"FNAME": ""}))
    assert decision.status is TraceStatus.FAILED
    assert decision.error is not None
    assert decision.error.message == "Contact has no first name (FNAME); accessplanit requires Forenames"
    assert decision.error.permanent


def test_a_name_longer_than_accessplanit_allows_is_a_permanent_failure() -> None:
    decision = run(mc_event(merges={"LNAME": "L" * 45}))
    assert decision.status is TraceStatus.FAILED
    assert decision.error is not None
    assert decision.error.message == "Surname is 45 characters long; accessplanit allows at most 40"


def test_a_record_tandem_has_not_seen_is_never_blanked() -> None:
    decision = run(ap_event(Phone=None))
    assert decision.command is not None
    assert "PHONE" not in decision.command.payload["merge_fields"]


def test_a_field_whose_target_value_tandem_has_not_seen_is_never_blanked() -> None:
    # Mailchimp is known (FNAME, LNAME written before) but not its PHONE (the mapping was added since): accessplanit's
    # empty Phone on its first sighting is no news, and Mailchimp may hold a number.
    names_only = {k: v for k, v in MC_HOLDS.items() if k != "PHONE"}
    known = Knowledge(target=side(names_only, origin="written"), previous_email="ada@example.com")
    decision = run(ap_event(Phone=None, Surname="Byron"), known)
    assert decision.command is not None
    assert decision.command.payload["merge_fields"] == {"LNAME": "Byron"}


# -- change detection ------------------------------------------------------------------------------------------


def test_no_command_when_the_target_already_holds_the_mapped_values() -> None:
    known = Knowledge(target=side(MC_HOLDS, origin="written"), previous_email="ada@example.com")
    decision = run(ap_event(), known)
    assert decision.status is TraceStatus.SKIPPED
    assert decision.command is None
    assert decision.changes_detected is False
    assert decision.summary == "No changes detected: Mailchimp already holds these values"


def test_only_what_the_target_does_not_hold_is_sent() -> None:
    known = Knowledge(source=side(AP_HOLDS), target=side(MC_HOLDS), previous_email="ada@example.com")
    decision = run(ap_event(Surname="Byron"), known)
    assert decision.command is not None
    assert decision.command.payload["merge_fields"] == {"LNAME": "Byron"}
    assert [u for u in decision.updates if isinstance(u, MergeSeen)][0].digests == {"Surname": field_digest("Byron")}


def test_an_unchanged_resave_still_delivers_what_the_target_never_got() -> None:
    # The source is unchanged since last seen, but the last write to Mailchimp never happened (e.g. it failed).
    known = Knowledge(source=side(AP_HOLDS), target=side({**MC_HOLDS, "LNAME": "Old"}, at=T0 - timedelta(days=1)))
    decision = run(ap_event(), known)
    assert decision.command is not None
    assert decision.command.payload["merge_fields"] == {"LNAME": "Lovelace"}


# -- echo suppression ------------------------------------------------------------------------------------------


def test_accessplanit_echo_by_the_integration_user_with_the_values_tandem_wrote_stops_here() -> None:
    known = Knowledge(source=side(AP_HOLDS, origin="written"), target=side(MC_HOLDS), previous_email="ada@example.com")
    decision = run(ap_event(updated_by=INTEGRATION_USER), known)
    assert decision.status is TraceStatus.SKIPPED
    assert decision.command is None
    assert decision.summary == "Echo of Tandem's own write to accessplanit: not sent back"
    assert decision.changes_detected is False


def test_the_same_values_saved_by_a_person_are_no_echo_but_nothing_to_send() -> None:
    known = Knowledge(source=side(AP_HOLDS, origin="written"), target=side(MC_HOLDS), previous_email="ada@example.com")
    decision = run(ap_event(updated_by=PERSON), known)
    assert decision.command is None
    assert decision.summary.startswith("No changes detected")


def test_an_edit_by_someone_else_through_the_api_still_syncs() -> None:
    known = Knowledge(source=side(AP_HOLDS, origin="written"), target=side(MC_HOLDS), previous_email="ada@example.com")
    decision = run(ap_event(updated_by=PERSON, Forenames="Augusta"), known)
    assert decision.command is not None
    assert decision.command.payload["merge_fields"] == {"FNAME": "Augusta"}


def test_a_change_by_the_integration_user_that_tandem_did_not_write_still_syncs() -> None:
    known = Knowledge(source=side(AP_HOLDS, origin="written"), target=side(MC_HOLDS), previous_email="ada@example.com")
    decision = run(ap_event(updated_by=INTEGRATION_USER, Forenames="Augusta"), known)
    assert decision.command is not None
    assert decision.command.payload["merge_fields"] == {"FNAME": "Augusta"}


def test_mailchimp_echo_of_the_merges_tandem_wrote_stops_here_even_with_unmapped_blanks() -> None:
    # Mailchimp reports every merge field; COMPANY was never written or seen and is blank.
    known = Knowledge(source=side(MC_HOLDS, origin="written"), target=side(AP_HOLDS))
    decision = run(mc_event(), known)
    assert decision.status is TraceStatus.SKIPPED
    assert decision.summary == "Echo of Tandem's own write to Mailchimp: not sent back"
    assert decision.command is None


def test_a_mailchimp_edit_after_tandems_write_syncs_only_the_edited_field() -> None:
    known = Knowledge(source=side(MC_HOLDS, origin="written"), target=side(AP_HOLDS))
    decision = run(mc_event(merges={"LNAME": "Byron", "COMPANY": "Acme"}), known)
    assert decision.command is not None
    assert decision.command.payload == {
        "Email": "ada@example.com",
        "Surname": "Byron",
        "CustomFields": {"Mailchimp Company": "Acme"},
    }


def test_a_late_echo_of_an_earlier_write_is_recognised_and_not_sent_back() -> None:
    # Tandem wrote LNAME "Byron" then "King"; Mailchimp's webhook for the first write arrives last.
    state = side({**MC_HOLDS, "LNAME": "King"}, origin="written", recent={"LNAME|" + field_digest("Byron"): T0})
    known = Knowledge(source=state, target=side({**AP_HOLDS, "Surname": "King"}))
    decision = run(mc_event(merges={"LNAME": "Byron"}, at=T2), known)
    assert decision.command is None
    assert decision.summary == "Echo of Tandem's own write to Mailchimp: not sent back"


# -- conflicts ---------------------------------------------------------------------------------------------------


def test_the_later_change_wins_a_conflict_and_the_trace_says_so() -> None:
    # Mailchimp's LNAME changed at T2; an accessplanit change from T1 arrives afterwards: Mailchimp keeps its value.
    known = Knowledge(
        source=side(AP_HOLDS, at=T0),
        target=side({**MC_HOLDS, "LNAME": "Byron"}, at=T2),
        previous_email="ada@example.com",
    )
    decision = run(ap_event(Surname="King", at=T1), known)
    assert decision.command is None
    assert decision.summary == "Nothing to send to Mailchimp: its later changes win (1 conflict(s))"
    assert any(
        line.startswith("Conflict on LNAME: Mailchimp's change from 2026-11-26 07:02:00 UTC") for line in decision.logs
    )


def test_a_later_change_overrides_an_earlier_value_on_the_other_side() -> None:
    known = Knowledge(source=side(MC_HOLDS, at=T0), target=side(AP_HOLDS, at=T1))
    decision = run(mc_event(merges={"LNAME": "Byron"}, at=T2), known)
    assert decision.command is not None
    assert decision.command.payload["Surname"] == "Byron"


def test_only_the_conflicting_field_is_held_back_the_rest_of_the_change_syncs() -> None:
    mailchimp = side(MC_HOLDS, at=T0, changed={"LNAME": ("Byron", T2)})
    known = Knowledge(source=side(AP_HOLDS, at=T0), target=mailchimp, previous_email="ada@example.com")
    decision = run(ap_event(Surname="King", Forenames="Augusta", at=T1), known)
    assert decision.command is not None
    assert decision.command.payload["merge_fields"] == {"FNAME": "Augusta"}
    assert "1 field(s) kept from Mailchimp's later change" in decision.summary


@pytest.mark.parametrize(
    ("source", "wins"),
    [(System.ACCESSPLANIT, True), (System.MAILCHIMP, False)],
)
def test_a_tie_is_resolved_deterministically_in_favour_of_accessplanit(source: System, wins: bool) -> None:
    if source is System.ACCESSPLANIT:
        known = Knowledge(source=side(AP_HOLDS), target=side({**MC_HOLDS, "LNAME": "Byron"}, at=T1))
        decision = run(ap_event(Surname="King", at=T1), known)
    else:
        known = Knowledge(source=side(MC_HOLDS), target=side({**AP_HOLDS, "Surname": "Byron"}, at=T1))
        decision = run(mc_event(merges={"LNAME": "King"}, at=T1), known)
    assert (decision.command is not None) is wins


def test_an_older_value_from_the_same_side_never_replaces_a_newer_one() -> None:
    known = Knowledge(source=side({**AP_HOLDS, "Surname": "King"}, at=T2), target=side(MC_HOLDS, at=T0))
    decision = run(ap_event(Surname="Byron", at=T1), known)
    assert decision.command is None
    assert any(line.startswith("Surname not sent: older than the value already applied") for line in decision.logs)


# -- email changes ---------------------------------------------------------------------------------------------


def test_an_accessplanit_email_change_changes_the_mailchimp_contacts_address() -> None:
    known = Knowledge(
        source=None, source_old=side(AP_HOLDS), target=None, target_old=side(MC_HOLDS), previous_email="ada@old.example"
    )
    decision = run(ap_event(), known)
    command = decision.command
    assert command is not None
    assert command.operation is Operation.CHANGE_EMAIL
    assert command.identity.old_email == "ada@old.example"
    assert command.identity.email == "ada@example.com"
    assert command.payload == {"email_address": "ada@example.com", "status_if_new": "subscribed", "merge_fields": {}}
    assert decision.updates[0] == MoveState(System.ACCESSPLANIT, "ada@old.example", "ada@example.com", ts_ms(T1))
    assert RememberUserEmail("7", "ada@example.com") in decision.updates
    assert "email change ada@old.example → ada@example.com" in decision.summary


def test_an_email_change_of_a_user_tandem_never_synced_still_asks_for_the_change() -> None:
    decision = run(ap_event(), Knowledge(previous_email="ada@old.example"))
    assert decision.command is not None
    assert decision.command.operation is Operation.CHANGE_EMAIL
    assert decision.command.payload["merge_fields"]["FNAME"] == "Ada"


def test_an_email_change_tandem_made_in_accessplanit_is_an_echo() -> None:
    # The accessplanit writer moved what it knows to the new address when it applied Mailchimp's upemail.
    known = Knowledge(
        source=side(AP_HOLDS, origin="written"),
        source_old=None,
        target=side(MC_HOLDS),
        previous_email="ada@old.example",
    )
    decision = run(ap_event(updated_by=INTEGRATION_USER), known)
    assert decision.command is None
    assert decision.summary == "Echo of Tandem's own write to accessplanit: not sent back"
    assert RememberUserEmail("7", "ada@example.com") in decision.updates


def test_mailchimp_upemail_changes_the_accessplanit_users_address() -> None:
    known = Knowledge(source_old=side(MC_HOLDS), target_old=side(AP_HOLDS))
    decision = run(mc_event(ChangeKind.EMAIL_CHANGED, email="ada@new.example", old_email="ada@example.com"), known)
    command = decision.command
    assert command is not None
    assert command.target is System.ACCESSPLANIT
    assert command.operation is Operation.CHANGE_EMAIL
    assert command.payload == {"Email": "ada@new.example"}
    assert (command.identity.old_email, command.identity.email) == ("ada@example.com", "ada@new.example")
    assert MoveState(System.MAILCHIMP, "ada@example.com", "ada@new.example", ts_ms(T1)) in decision.updates


def test_mailchimp_upemail_echo_of_tandems_change_stops_here() -> None:
    known = Knowledge(source=side(MC_HOLDS, origin="written"), source_old=None, target=side(AP_HOLDS))
    decision = run(mc_event(ChangeKind.EMAIL_CHANGED, email="ada@new.example", old_email="ada@example.com"), known)
    assert decision.command is None
    assert decision.summary == "Echo of Tandem's own write to Mailchimp: not sent back"


def test_an_address_the_target_already_uses_needs_no_email_change() -> None:
    known = Knowledge(source_old=side(MC_HOLDS), target=side(AP_HOLDS), target_old=None)
    decision = run(mc_event(ChangeKind.EMAIL_CHANGED, email="ada@new.example", old_email="ada@example.com"), known)
    assert decision.command is None
    assert decision.summary.startswith("No changes detected")
    assert "accessplanit already has the new address ada@new.example" in decision.logs


def test_new_contact_policy_keeps_the_seeds_behaviour_a_new_mailchimp_contact() -> None:
    config = instance(email_change_policy=EmailChangePolicy.NEW_CONTACT)
    known = Knowledge(source_old=side(AP_HOLDS), target_old=side(MC_HOLDS), previous_email="ada@old.example")
    decision = run(ap_event(), known, config)
    command = decision.command
    assert command is not None
    assert command.operation is Operation.UPSERT
    assert command.payload["email_address"] == "ada@example.com"
    assert command.payload["merge_fields"]["FNAME"] == "Ada"
    assert not any(isinstance(u, MoveState) for u in decision.updates)


def test_new_contact_policy_waits_for_the_mailchimp_contacts_next_change() -> None:
    config = instance(email_change_policy=EmailChangePolicy.NEW_CONTACT)
    decision = run(
        mc_event(ChangeKind.EMAIL_CHANGED, email="ada@new.example", old_email="ada@example.com"), None, config
    )
    assert decision.command is None
    assert "new_contact policy" in decision.summary


def test_a_later_change_overwritten_by_tandems_older_write_is_written_back_to_its_own_side() -> None:
    # Tandem wrote LNAME "Byron" (from accessplanit at T0) to Mailchimp; the write landed at T2, after a person had
    # set "King" in Mailchimp at T1. Mailchimp's webhook for "King" arrives now: King is later, so it wins on both
    # sides — accessplanit takes it, and Mailchimp gets it back over Tandem's older write.
    written = {"LNAME|" + field_digest("Byron"): RecentWrite(ts_ms(T0), ts_ms(T2))}
    mailchimp = SideState(
        {**side(MC_HOLDS).fields, "LNAME": FieldState(field_digest("Byron"), ts_ms(T0), "written")},
        "written",
        ts_ms(T0),
        written,
    )
    known = Knowledge(source=mailchimp, target=side({**AP_HOLDS, "Surname": "Byron"}))
    decision = run(mc_event(merges={"LNAME": "King"}, at=T1), known)
    assert decision.command is not None
    assert decision.command.payload == {"Email": "ada@example.com", "Surname": "King"}
    assert decision.repair is not None
    assert decision.repair.target is System.MAILCHIMP
    assert decision.repair.payload["merge_fields"] == {"LNAME": "King"}
    assert decision.summary.endswith("; written back to Mailchimp")


def test_a_field_read_before_tandems_write_replaced_it_is_not_a_change_nor_written_back() -> None:
    # Tandem wrote Surname "King" (a Mailchimp change of T0) to accessplanit, recorded at T2 over "Lovelace". A
    # person changed the first name at T1, and ingest read the user back before the write landed: the record still
    # has "Lovelace". That is the value the write replaced, not a later change: only the first name is news.
    accessplanit = SideState(
        {**side(AP_HOLDS).fields, "Surname": FieldState(field_digest("King"), ts_ms(T0), "written")},
        "written",
        ts_ms(T0),
        {"Surname|" + field_digest("King"): RecentWrite(ts_ms(T0), ts_ms(T2))},
        replaced={"Surname|" + field_digest("Lovelace"): ts_ms(T2)},
    )
    known = Knowledge(source=accessplanit, target=side({**MC_HOLDS, "LNAME": "King"}))
    decision = run(ap_event(Forenames="Augusta"), known)
    assert decision.command is not None
    assert decision.command.payload["merge_fields"] == {"FNAME": "Augusta"}
    assert decision.repair is None
    assert any(log.startswith("Surname not sent: the value Tandem's write recorded at") for log in decision.logs)

    # The same value set again after the write was recorded is a change like any other.
    again = run(ap_event(Forenames="Augusta", at=T2 + timedelta(seconds=1)), known)
    assert again.command is not None
    assert again.command.payload["merge_fields"] == {"FNAME": "Augusta", "LNAME": "Lovelace"}


def test_a_change_made_after_tandems_write_landed_needs_no_write_back() -> None:
    written = {"LNAME|" + field_digest("Byron"): RecentWrite(ts_ms(T0), ts_ms(T0))}
    mailchimp = SideState(
        {**side(MC_HOLDS).fields, "LNAME": FieldState(field_digest("Byron"), ts_ms(T0), "written")},
        "written",
        ts_ms(T0),
        written,
    )
    decision = run(mc_event(merges={"LNAME": "King"}, at=T1), Knowledge(source=mailchimp, target=side(AP_HOLDS)))
    assert decision.command is not None
    assert decision.repair is None


def test_users_sharing_an_address_the_last_change_wins_in_mailchimp() -> None:
    # User 7 synced first; user 8 has the same address and changes later: Mailchimp gets user 8's values.
    known = Knowledge(source=side(AP_HOLDS), target=side(MC_HOLDS, origin="written"))
    other_user = ap_event(ID="8", Forenames="Augusta", Surname="King")
    other_user = other_user.model_copy(
        update={"identity": other_user.identity.model_copy(update={"accessplanit_user_id": "8"})}
    )
    decision = run(other_user, known)
    assert decision.command is not None
    assert decision.command.payload["merge_fields"] == {"FNAME": "Augusta", "LNAME": "King"}
    assert RememberUserEmail("8", "ada@example.com") in decision.updates


def test_an_echo_of_a_write_not_yet_recorded_is_recognised_by_what_the_mapper_sent() -> None:
    sent = {f"{name}|{field_digest(value)}": RecentWrite(ts_ms(T0), ts_ms(T0)) for name, value in MC_HOLDS.items()}
    known = Knowledge(source=SideState({}, "seen", 0, sent), target=side(AP_HOLDS))
    decision = run(mc_event(), known)
    assert decision.command is None
    assert decision.summary == "Echo of Tandem's own write to Mailchimp: not sent back"


def test_a_second_change_from_the_same_side_in_the_same_second_replaces_what_tandem_wrote_from_the_first() -> None:
    # Mailchimp's timestamps have whole seconds: a contact added and renamed within one second carries T1 twice.
    # accessplanit's Forenames came from the first through Tandem; the second is no conflict, it simply wins.
    known = Knowledge(source=side(MC_HOLDS, at=T1), target=side(AP_HOLDS, at=T1, origin="written"))
    decision = run(mc_event(merges={"FNAME": "Augusta"}, at=T1), known)
    assert decision.command is not None
    assert decision.command.payload["Forenames"] == "Augusta"
