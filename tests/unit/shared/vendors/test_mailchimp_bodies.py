"""The bodies the Mailchimp target sends: consent is never overridden, addresses are hashed as sent."""

from __future__ import annotations

from tandem_shared.contracts import ErrorInfo, MailchimpConnection
from tandem_shared.vendors.mailchimp.bodies import (
    invalid_item_error,
    invalid_items,
    member_summary,
    patch_body,
    upsert_body,
)
from tandem_shared.vendors.mailchimp.client import limiter_name


def test_upsert_sends_status_if_new_and_never_status() -> None:
    body = upsert_body(
        {"email_address": "a@example.com", "status": "subscribed", "merge_fields": {"FNAME": "A"}}, "pending"
    )
    assert body == {"email_address": "a@example.com", "status_if_new": "pending", "merge_fields": {"FNAME": "A"}}


def test_upsert_keeps_the_commands_own_status_if_new() -> None:
    body = upsert_body({"email_address": "a@example.com", "status_if_new": "subscribed"}, "pending")
    assert isinstance(body, dict)
    assert body["status_if_new"] == "subscribed"


def test_a_command_without_an_address_is_a_permanent_error() -> None:
    for payload in ({}, {"email_address": "  "}, {"email_address": 42}):
        error = upsert_body(payload, "subscribed")
        assert isinstance(error, ErrorInfo)
        assert error.permanent
        assert error.field == "email_address"


def test_patch_carries_no_status_of_any_kind() -> None:
    body = patch_body({"email_address": "new@example.com", "status_if_new": "subscribed", "merge_fields": {}})
    assert body == {"email_address": "new@example.com", "merge_fields": {}}


def test_limiter_names_hide_the_key_and_separate_accounts_and_servers() -> None:
    name = limiter_name("http://127.0.0.1:8101/3.0", "secretkey-us1")
    assert "secretkey" not in name
    assert name.startswith("mailchimp:")
    assert name == limiter_name("http://127.0.0.1:8101/3.0", "secretkey-us1")
    assert name != limiter_name("http://127.0.0.1:8101/3.0", "otherkey-us1")
    assert name != limiter_name("http://127.0.0.1:9999/3.0", "secretkey-us1")


def test_member_summary_keeps_what_a_person_needs() -> None:
    member = {"id": "h", "email_address": "a@example.com", "status": "subscribed", "_links": [{}], "stats": {}}
    assert member_summary(member) == {"id": "h", "email_address": "a@example.com", "status": "subscribed"}


def test_api_root_comes_from_the_key_data_centre_unless_configured() -> None:
    real = MailchimpConnection(api_key="env:K", audience_id="a")
    assert real.api_root("abc-us6") == "https://us6.api.mailchimp.com/3.0"
    sim = MailchimpConnection(api_key="env:K", audience_id="a", api_base_url="http://127.0.0.1:8101/3.0/")
    assert sim.api_root("abc-us6") == "http://127.0.0.1:8101/3.0"


def test_a_whole_batch_refusal_names_its_items_by_index() -> None:
    problem = {
        "title": "Invalid Resource",
        "errors": [
            {"field": "members.item:2.status", "message": "Data presented is not one of the accepted values."},
            {"field": "members.item:2.vip", "message": "Schema describes boolean."},
            {"field": "members.item:0", "message": "Schema describes object."},
            {"field": "members.item:9.status", "message": "beyond what was sent"},
            {"field": "members", "message": "not about one item"},
        ],
    }
    named = invalid_items(problem, 3)
    assert named == {
        2: [
            ("status", "Data presented is not one of the accepted values."),
            ("vip", "Schema describes boolean."),
        ],
        0: [("", "Schema describes object.")],
    }
    error = invalid_item_error(named[2])
    assert (error.permanent, error.error_class, error.field) == (True, "InvalidResource", "status")
    assert "status: Data presented is not one of the accepted values.; vip: Schema describes boolean." in error.message
    assert invalid_items({"title": "Invalid Resource"}, 3) == {}
    assert invalid_items(None, 3) == {}
