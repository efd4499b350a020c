"""What the trace keeps of a contact's record: identity and mapped fields; the rest only counted."""

from __future__ import annotations

from datetime import UTC, datetime

from tandem_shared.contracts import ChangeEvent, ChangeKind, ContactIdentity, FieldMapping, System, Trigger
from tandem_shared.instances import demo_instance
from tandem_shared.privacy import MASK, NOT_MAPPED, mask, minimise_event, minimise_fields, minimise_response

INSTANCE = demo_instance().model_copy(
    update={
        "mappings": [
            *demo_instance().mappings,
            FieldMapping(mailchimp="COMPANY", accessplanit="custom:Company"),
        ]
    }
)


def test_accessplanit_fields_keep_identity_and_mapped_fields_only() -> None:
    user = {
        "ID": "1001",
        "Email": "ann@example.com",
        "Forenames": "Ann",
        "Surname": "Lee",
        "DOB": "1980-02-03T00:00:00",
        "Mobile": "+44 7700 900000",
        "CustomFields": {"Company": "Acme", "Dietary needs": "none"},
    }
    kept = minimise_fields(user, System.ACCESSPLANIT, INSTANCE)
    assert kept == {
        "ID": "1001",
        "Email": "ann@example.com",
        "Forenames": "Ann",
        "Surname": "Lee",
        "CustomFields": {"Company": "Acme"},
        NOT_MAPPED: "3 fields not mapped",
    }


def test_mailchimp_fields_drop_the_opt_in_ip_addresses() -> None:
    fields = {"email": "ann@example.com", "id": "abc", "list_id": "L1", "FNAME": "Ann", "ip_opt": "198.51.100.7"}
    assert minimise_fields(fields, System.MAILCHIMP, INSTANCE) == {
        "email": "ann@example.com",
        "id": "abc",
        "list_id": "L1",
        "FNAME": "Ann",
        NOT_MAPPED: "1 field not mapped",
    }


def test_without_the_instance_only_the_identity_is_kept() -> None:
    assert minimise_fields({"ID": "7", "Forenames": "Ann"}, System.ACCESSPLANIT, None) == {
        "ID": "7",
        NOT_MAPPED: "1 field not mapped",
    }


def test_an_event_is_dumped_with_its_fields_minimised() -> None:
    now = datetime(2026, 12, 3, tzinfo=UTC)
    event = ChangeEvent(
        event_id="e1",
        execution_id="x1",
        instance_id="demo",
        source=System.ACCESSPLANIT,
        kind=ChangeKind.UPDATED,
        identity=ContactIdentity(accessplanit_user_id="7", email="ann@example.com"),
        fields={"ID": "7", "Forenames": "Ann", "DOB": "1990-03-28T00:00:00"},
        occurred_at=now,
        received_at=now,
        trigger=Trigger.WEBHOOK,
    )
    dumped = minimise_event(event, INSTANCE)
    assert dumped["fields"] == {"ID": "7", "Forenames": "Ann", NOT_MAPPED: "1 field not mapped"}
    assert dumped["identity"]["email"] == "ann@example.com"


def test_a_vendor_answer_is_cut_to_what_was_written() -> None:
    payload = {"email_address": "ann@example.com", "merge_fields": {"FNAME": "Ann"}}
    answer = {
        "id": "abc",
        "email_address": "ann@example.com",
        "status": "subscribed",
        "merge_fields": {"FNAME": "Ann", "PHONE": "0123", "BIRTHDAY": "02/03"},
        "ip_signup": "198.51.100.7",
    }
    assert minimise_response(answer, payload) == {
        "id": "abc",
        "email_address": "ann@example.com",
        "status": "subscribed",
        "merge_fields": {"FNAME": "Ann"},
        NOT_MAPPED: "3 fields not mapped",
    }
    assert minimise_response(None, payload) is None


def test_masking_hides_chosen_fields_at_any_depth_for_display_only() -> None:
    output = {"Email": "ann@example.com", "merge_fields": {"PHONE": "0123", "FNAME": "Ann"}, "items": [{"dob": "x"}]}
    shown = mask(output, frozenset({"phone", "dob"}))
    assert shown["merge_fields"] == {"PHONE": MASK, "FNAME": "Ann"}
    assert (shown["Email"], shown["items"]) == ("ann@example.com", [{"dob": MASK}])
    assert output["merge_fields"]["PHONE"] == "0123"  # type: ignore[index]
    assert mask(output, frozenset()) is output
