"""Mailchimp's sample deliveries as ChangeEvents: kinds, identity, flat merge fields, times, dedupe keys."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tandem_ingest.domain.errors import InvalidPayload
from tandem_ingest.domain.normalize.mailchimp import Ignored, normalize_webhook, parse_form
from tandem_shared.contact_hash import contact_hash
from tandem_shared.contracts import ChangeEvent, ChangeKind, System, Trigger, subscriber_hash

FIXTURES = Path(__file__).parents[2] / "simulators" / "mailchimp" / "fixtures" / "mailchimp-webhooks"
AUDIENCE = "a6b5da1054"
RECEIVED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def form(name: str) -> dict[str, object]:
    return parse_form((FIXTURES / f"{name}.form").read_bytes().strip())


def normalize(body: dict[str, object], *, instance_id: str = "inst", audience: str | None = AUDIENCE) -> object:
    return normalize_webhook(
        instance_id=instance_id, audience_id=audience, form=body, execution_id="exec-1", received_at=RECEIVED
    )


def event(name: str) -> ChangeEvent:
    result = normalize(form(name))
    assert isinstance(result, ChangeEvent)
    return result


def test_subscribe_is_a_created_contact_with_flat_merge_fields() -> None:
    e = event("subscribe")
    assert e.source is System.MAILCHIMP
    assert e.kind is ChangeKind.CREATED
    assert e.trigger is Trigger.WEBHOOK
    assert e.instance_id == "inst"
    assert e.execution_id == "exec-1"
    assert e.identity.email == "api@mailchimp.com"
    assert e.identity.old_email is None
    assert e.identity.mailchimp_member_id == subscriber_hash("api@mailchimp.com")
    assert e.fields == {
        "EMAIL": "api@mailchimp.com",
        "FNAME": "MailChimp",
        "LNAME": "API",
        "INTERESTS": "Group1,Group2",
        "id": "8a25ff1d98",
        "list_id": AUDIENCE,
        "email": "api@mailchimp.com",
        "email_type": "html",
        "ip_opt": "10.20.10.30",
        "ip_signup": "10.20.10.30",
    }
    assert e.occurred_at == datetime(2009, 3, 26, 21, 35, 57, tzinfo=UTC)
    assert e.received_at == RECEIVED
    assert e.source_action == "subscribe"


def test_profile_is_an_update() -> None:
    e = event("profile")
    assert e.kind is ChangeKind.UPDATED
    assert e.fields["FNAME"] == "MailChimp"
    assert e.fields["id"] == "8a25ff1d98"
    assert e.occurred_at == datetime(2009, 3, 26, 21, 31, 21, tzinfo=UTC)


def test_upemail_carries_both_addresses_and_is_ordered_by_the_old_one() -> None:
    e = event("upemail")
    assert e.kind is ChangeKind.EMAIL_CHANGED
    assert e.identity.email == "api+new@mailchimp.com"
    assert e.identity.old_email == "api+old@mailchimp.com"
    assert e.identity.mailchimp_member_id == subscriber_hash("api+new@mailchimp.com")
    assert e.identity.contact_key == f"mc:{contact_hash('api+old@mailchimp.com')}"
    assert e.fields == {
        "email": "api+new@mailchimp.com",
        "old_email": "api+old@mailchimp.com",
        "list_id": AUDIENCE,
        "id": "51da8c3259",
    }


def test_unsubscribe_is_recorded_with_its_reason() -> None:
    e = event("unsubscribe")
    assert e.kind is ChangeKind.UNSUBSCRIBED
    assert e.identity.email == "api+unsub@mailchimp.com"
    assert e.fields["action"] == "unsub"
    assert e.fields["reason"] == "manual"
    assert e.fields["campaign_id"] == "cb398d21d2"
    assert e.source_action == "unsubscribe (unsub)"


def test_an_unsubscribe_that_archives_is_a_delete_not_a_consent_change() -> None:
    body = form("unsubscribe")
    body["data"] = {**body["data"], "action": "delete"}  # type: ignore[dict-item]
    result = normalize(body)
    assert isinstance(result, ChangeEvent)
    assert result.kind is ChangeKind.DELETED
    assert result.source_action == "unsubscribe (delete)"


def test_cleaned_is_recorded_without_merges() -> None:
    e = event("cleaned")
    assert e.kind is ChangeKind.CLEANED
    assert e.identity.email == "api+cleaned@mailchimp.com"
    assert e.fields == {
        "list_id": AUDIENCE,
        "campaign_id": "4fjk2ma9xd",
        "reason": "hard",
        "email": "api+cleaned@mailchimp.com",
    }


def test_campaign_is_ignored() -> None:
    result = normalize(form("campaign"))
    assert isinstance(result, Ignored)
    assert result.event_type == "campaign"


def test_unknown_event_types_are_ignored() -> None:
    result = normalize({"type": "sms_subscribe", "fired_at": "2024-01-01 00:00:00", "data": {}})
    assert isinstance(result, Ignored)


def test_a_redelivery_has_the_same_event_id() -> None:
    first = normalize(form("profile"))
    again = normalize_webhook(
        instance_id="inst", audience_id=AUDIENCE, form=form("profile"), execution_id="exec-2", received_at=RECEIVED
    )
    assert isinstance(first, ChangeEvent) and isinstance(again, ChangeEvent)
    assert first.event_id == again.event_id
    assert first.execution_id != again.execution_id


def test_event_ids_differ_by_type_member_time_instance_and_data() -> None:
    base = form("profile")
    ids = {event("profile").event_id, event("subscribe").event_id}
    later = {**base, "fired_at": "2009-03-26 21:31:22"}
    other_member = {**base, "data": {**base["data"], "id": "ffffffffff"}}  # type: ignore[dict-item]
    other_name = {**base, "data": {**base["data"], "merges": {"FNAME": "Other"}}}  # type: ignore[dict-item]
    for variant in (later, other_member, other_name):
        result = normalize(variant)
        assert isinstance(result, ChangeEvent)
        ids.add(result.event_id)
    other_instance = normalize(base, instance_id="other")
    assert isinstance(other_instance, ChangeEvent)
    ids.add(other_instance.event_id)
    assert len(ids) == 6


def test_upemail_and_cleaned_are_keyed_by_address_when_they_have_no_id() -> None:
    body = form("upemail")
    without_id = {**body, "data": {k: v for k, v in body["data"].items() if k != "new_id"}}  # type: ignore[union-attr]
    result = normalize(without_id)
    assert isinstance(result, ChangeEvent)
    assert "id" not in result.fields
    assert result.event_id != event("upemail").event_id


def test_address_merges_keep_their_parts() -> None:
    raw = urlencode(
        {
            "type": "profile",
            "fired_at": "2026-05-01 10:00:00",
            "data[id]": "0123456789",
            "data[list_id]": AUDIENCE,
            "data[email]": "ada@example.com",
            "data[merges][ADDRESS][addr1]": "1 Main St",
            "data[merges][ADDRESS][city]": "Leeds",
        }
    ).encode()
    result = normalize(parse_form(raw))
    assert isinstance(result, ChangeEvent)
    assert result.fields["ADDRESS"] == {"addr1": "1 Main St", "city": "Leeds"}


def test_fired_at_with_a_zone_is_converted_to_utc() -> None:
    body = {**form("profile"), "fired_at": "2026-05-01T12:00:00+02:00"}
    result = normalize(body)
    assert isinstance(result, ChangeEvent)
    assert result.occurred_at == datetime(2026, 5, 1, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"type": None}, "type is missing"),
        ({"type": {"x": "y"}}, "type is missing"),
        ({"fired_at": None}, "fired_at is missing"),
        ({"fired_at": "yesterday"}, "fired_at is not"),
        ({"fired_at": "0001-01-01T00:00:00+01:00"}, "fired_at is not"),
        ({"data": None}, "data"),
        ({"data": "x"}, "data"),
    ],
)
def test_malformed_envelopes_are_refused(change: dict[str, object], message: str) -> None:
    body = {k: v for k, v in {**form("subscribe"), **change}.items() if v is not None}
    with pytest.raises(InvalidPayload, match=message):
        normalize(body)


@pytest.mark.parametrize(
    ("name", "data_change", "message"),
    [
        ("subscribe", {"email": None}, r"data\[email\] is missing"),
        ("subscribe", {"email": "   "}, r"data\[email\] is missing"),
        ("subscribe", {"email": {"a": "b"}}, r"data\[email\] must be a single value"),
        ("subscribe", {"list_id": None}, r"data\[list_id\] is missing"),
        ("subscribe", {"merges": "FNAME"}, r"data\[merges\] must be a group"),
        ("subscribe", {"ip_opt": ["1"]}, r"data\[ip_opt\] must be a single value"),
        ("upemail", {"old_email": None}, r"data\[old_email\] is missing"),
        ("upemail", {"new_email": None}, r"data\[new_email\] is missing"),
        ("cleaned", {"email": None}, r"data\[email\] is missing"),
    ],
)
def test_malformed_data_is_refused(name: str, data_change: dict[str, object], message: str) -> None:
    body = form(name)
    data = {k: v for k, v in {**body["data"], **data_change}.items() if v is not None}  # type: ignore[dict-item]
    with pytest.raises(InvalidPayload, match=message):
        normalize({**body, "data": data})


def test_a_delivery_for_another_audience_is_refused() -> None:
    with pytest.raises(InvalidPayload, match="not this instance's audience"):
        normalize(form("subscribe"), audience="zzzzzzzzzz")


def test_a_recorded_shape_delivery_with_web_id_and_empty_keys_left_out_is_parsed_too() -> None:
    # What the simulator sends by default (mailchimp-api.md §10: captured payloads carry data[web_id] and leave out
    # keys that do not apply); the published samples (the fixtures above) stay accepted.
    body = urlencode(
        [
            ("type", "subscribe"),
            ("fired_at", "2026-03-26 21:35:57"),
            ("data[id]", "8a25ff1d98"),
            ("data[web_id]", "123456789"),
            ("data[list_id]", AUDIENCE),
            ("data[email]", "rec@example.com"),
            ("data[email_type]", "html"),
            ("data[merges][EMAIL]", "rec@example.com"),
            ("data[merges][FNAME]", "Rec"),
        ]
    ).encode()
    result = normalize(parse_form(body))
    assert isinstance(result, ChangeEvent)
    assert result.kind is ChangeKind.CREATED
    assert result.identity.email == "rec@example.com"
    assert result.fields == {
        "EMAIL": "rec@example.com",
        "FNAME": "Rec",
        "id": "8a25ff1d98",
        "web_id": "123456789",
        "list_id": AUDIENCE,
        "email": "rec@example.com",
        "email_type": "html",
    }
    sample = event("subscribe")
    assert "web_id" not in sample.fields and sample.fields["INTERESTS"] == "Group1,Group2"
