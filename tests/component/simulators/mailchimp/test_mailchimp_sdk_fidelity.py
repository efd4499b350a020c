"""The simulator driven through PyPI's official `mailchimp-marketing` SDK, the way a real client would call it."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import requests
from component.simulators.mailchimp.mailchimp_testkit import (
    DEMO_LIST,
    SimServer,
    md5,
    running_receiver,
    sdk_client,
)
from mailchimp_marketing.api_client import ApiClientError


def error_of(raised: pytest.ExceptionInfo[ApiClientError]) -> dict[str, Any]:
    """The SDK leaves problem+json unparsed: `.text` is the raw body."""
    assert isinstance(raised.value.text, str)
    body: dict[str, Any] = json.loads(raised.value.text)
    assert body["status"] == raised.value.status_code
    assert set(body) >= {"type", "title", "status", "detail", "instance"}
    return body


def test_set_list_member_creates_then_updates(sdk: Any) -> None:
    email = "Ada@Example.com"
    body = {"email_address": email, "status_if_new": "subscribed", "merge_fields": {"FNAME": "Ada"}}
    created = sdk.lists.set_list_member(DEMO_LIST, md5(email), body)
    assert created["id"] == md5(email)
    assert (created["email_address"], created["status"], created["source"]) == (email, "subscribed", "API - Generic")
    assert created["list_id"] == DEMO_LIST
    assert len(created["unique_email_id"]) == 10
    assert created["merge_fields"] == {
        "FNAME": "Ada",
        "LNAME": "",
        "ADDRESS": "",
        "PHONE": "",
        "BIRTHDAY": "",
        "COMPANY": "",
    }

    again = {"email_address": email, "status_if_new": "pending", "merge_fields": {"LNAME": "Lovelace"}}
    updated = sdk.lists.set_list_member(DEMO_LIST, md5(email), again)
    assert updated["status"] == "subscribed"  # status_if_new only applies on create
    assert (updated["merge_fields"]["FNAME"], updated["merge_fields"]["LNAME"]) == ("Ada", "Lovelace")
    assert (updated["unique_email_id"], updated["contact_id"]) == (created["unique_email_id"], created["contact_id"])

    fetched = sdk.lists.get_list_member(DEMO_LIST, md5(email))
    assert fetched["merge_fields"]["LNAME"] == "Lovelace"


def test_get_list_member_by_email_address_and_missing_member(sdk: Any) -> None:
    sdk.lists.set_list_member(
        DEMO_LIST, md5("bo@example.com"), {"email_address": "bo@example.com", "status": "pending"}
    )
    assert sdk.lists.get_list_member(DEMO_LIST, "bo@example.com")["status"] == "pending"
    with pytest.raises(ApiClientError) as raised:
        sdk.lists.get_list_member(DEMO_LIST, md5("nobody@example.com"))
    assert raised.value.status_code == 404
    assert error_of(raised)["title"] == "Resource Not Found"


def test_update_list_member_changes_the_email_and_the_id(sdk: Any) -> None:
    old, new = "old@example.com", "new@example.com"
    sdk.lists.set_list_member(DEMO_LIST, md5(old), {"email_address": old, "status_if_new": "subscribed"})
    moved = sdk.lists.update_list_member(DEMO_LIST, md5(old), {"email_address": new})
    assert (moved["id"], moved["email_address"]) == (md5(new), new)
    assert sdk.lists.get_list_member(DEMO_LIST, md5(new))["status"] == "subscribed"
    with pytest.raises(ApiClientError) as raised:
        sdk.lists.get_list_member(DEMO_LIST, md5(old))
    assert raised.value.status_code == 404


def test_update_list_member_onto_an_address_already_on_the_list_fails(sdk: Any) -> None:
    for email in ("one@example.com", "two@example.com"):
        sdk.lists.set_list_member(DEMO_LIST, md5(email), {"email_address": email, "status_if_new": "subscribed"})
    with pytest.raises(ApiClientError) as raised:
        sdk.lists.update_list_member(DEMO_LIST, md5("one@example.com"), {"email_address": "two@example.com"})
    body = error_of(raised)
    assert (body["status"], body["title"]) == (400, "Invalid Resource")
    assert body["detail"] == '"two@example.com" is already in this list with a status of "subscribed".'


def test_get_list_members_info_pages_and_filters(sdk: Any) -> None:
    for i in range(12):
        status = "unsubscribed" if i % 4 == 0 else "subscribed"
        email = f"m{i:02d}@example.com"
        sdk.lists.set_list_member(DEMO_LIST, md5(email), {"email_address": email, "status_if_new": status})
    first = sdk.lists.get_list_members_info(DEMO_LIST)
    assert (len(first["members"]), first["total_items"]) == (10, 12)
    page = sdk.lists.get_list_members_info(DEMO_LIST, count=5, offset=10)
    assert [m["email_address"] for m in page["members"]] == ["m10@example.com", "m11@example.com"]
    unsubscribed = sdk.lists.get_list_members_info(DEMO_LIST, status="unsubscribed")
    assert unsubscribed["total_items"] == 3
    assert {m["status"] for m in unsubscribed["members"]} == {"unsubscribed"}
    trimmed = sdk.lists.get_list_members_info(DEMO_LIST, fields=["members.email_address", "total_items"], count=1)
    assert trimmed == {"members": [{"email_address": "m00@example.com"}], "total_items": 12}


def test_batch_list_members_reports_created_updated_and_errors(sdk: Any) -> None:
    sdk.lists.set_list_member(
        DEMO_LIST, md5("had@example.com"), {"email_address": "had@example.com", "status": "subscribed"}
    )
    members = [
        {"email_address": "fresh@example.com", "status": "subscribed", "merge_fields": {"FNAME": "Fresh"}},
        {"email_address": "had@example.com", "status": "subscribed", "merge_fields": {"FNAME": "Had"}},
        {"email_address": "bad@example.com", "status": "subscribed", "merge_fields": {"BIRTHDAY": "31/31"}},
    ]
    result = sdk.lists.batch_list_members(DEMO_LIST, {"members": members})
    assert (result["total_created"], result["total_updated"], result["error_count"]) == (1, 0, 2)
    assert [m["email_address"] for m in result["new_members"]] == ["fresh@example.com"]
    codes = {e["email_address"]: (e["error_code"], e["field"]) for e in result["errors"]}
    assert codes == {
        "had@example.com": ("ERROR_CONTACT_EXISTS", "email_address"),
        "bad@example.com": ("ERROR_GENERIC", "BIRTHDAY"),
    }

    updating = sdk.lists.batch_list_members(DEMO_LIST, {"members": members[1:2], "update_existing": True})
    assert (updating["total_created"], updating["total_updated"], updating["error_count"]) == (0, 1, 0)
    assert updating["updated_members"][0]["merge_fields"]["FNAME"] == "Had"


def test_batch_list_members_over_500_is_rejected(sdk: Any) -> None:
    members = [{"email_address": f"b{i}@example.com", "status": "subscribed"} for i in range(501)]
    with pytest.raises(ApiClientError) as raised:
        sdk.lists.batch_list_members(DEMO_LIST, {"members": members})
    assert error_of(raised)["title"] == "Invalid Resource"


def test_merge_fields_added_through_the_sdk_are_listed_and_enforced(sdk: Any) -> None:
    created = sdk.lists.add_list_merge_field(
        DEMO_LIST,
        {"name": "Plan", "type": "dropdown", "tag": "PLAN", "required": True, "options": {"choices": ["Free", "Pro"]}},
    )
    assert (created["tag"], created["type"], created["required"]) == ("PLAN", "dropdown", True)
    listed = sdk.lists.get_list_merge_fields(DEMO_LIST, count=100)
    assert [f["tag"] for f in listed["merge_fields"]] == [
        "FNAME",
        "LNAME",
        "ADDRESS",
        "PHONE",
        "BIRTHDAY",
        "COMPANY",
        "PLAN",
    ]
    assert listed["total_items"] == 7
    assert sdk.lists.get_list_merge_fields(DEMO_LIST)["total_items"] == 7

    with pytest.raises(ApiClientError) as raised:
        sdk.lists.set_list_member(
            DEMO_LIST, md5("p@example.com"), {"email_address": "p@example.com", "status_if_new": "subscribed"}
        )
    body = error_of(raised)
    assert (body["title"], body["detail"]) == ("Invalid Resource", "Your merge fields were invalid.")
    assert body["errors"] == [{"field": "PLAN", "message": "Please enter a value"}]

    skipped = sdk.lists.set_list_member(
        DEMO_LIST,
        md5("p@example.com"),
        {"email_address": "p@example.com", "status_if_new": "subscribed"},
        skip_merge_validation=True,
    )
    assert skipped["merge_fields"]["PLAN"] == ""


def test_create_list_webhook_verifies_the_url_and_returns_the_secret_once(sdk: Any) -> None:
    with running_receiver() as receiver:
        body = {
            "url": receiver.url,
            "events": {"subscribe": True, "profile": True},
            "sources": {"api": True, "admin": True, "user": True},
        }
        created = sdk.lists.create_list_webhook(DEMO_LIST, body)
        assert [r.method for r in receiver.gets] == ["GET"]
        assert created["url"] == receiver.url
        assert created["events"]["subscribe"] is True
        assert created["events"]["unsubscribe"] is False
        assert created["signing_enabled"] is True
        assert len(created["signing_secret"]) == 64
        listed = sdk.lists.get_list_webhooks(DEMO_LIST)
        assert [w["id"] for w in listed["webhooks"]] == [created["id"]]
        assert "signing_secret" not in listed["webhooks"][0]

        receiver.get_status = 404
        with pytest.raises(ApiClientError) as raised:
            sdk.lists.create_list_webhook(DEMO_LIST, {"url": receiver.url + "/other"})
        assert error_of(raised)["detail"] == (
            "We couldn't verify the URL is working. Please double check and try again. HTTP Code: 404"
        )


def test_delete_archives_then_405_then_permanent_delete_forgets(sdk: Any, api: httpx.Client) -> None:
    email = "gone@example.com"
    sdk.lists.set_list_member(DEMO_LIST, md5(email), {"email_address": email, "status_if_new": "subscribed"})
    deleted = sdk.lists.delete_list_member(DEMO_LIST, md5(email))
    assert isinstance(deleted, requests.Response) and deleted.status_code == 204
    assert sdk.lists.get_list_member(DEMO_LIST, md5(email))["status"] == "archived"

    again = api.delete(f"/lists/{DEMO_LIST}/members/{md5(email)}")
    assert again.status_code == 405
    assert again.headers["allow"] == "GET, PUT"
    # The recorded text (reference §10, grouparoo fixtures), which supersedes §2.2's older "Please contact support."
    assert again.json()["detail"] == (
        "This list member cannot be removed. Can not archive a contact that is bounced, pending or archived. "
        "See the Allow header for this resource's available methods."
    )

    sdk.lists.delete_list_member_permanent(DEMO_LIST, md5(email))
    with pytest.raises(ApiClientError) as raised:
        sdk.lists.set_list_member(DEMO_LIST, md5(email), {"email_address": email, "status_if_new": "subscribed"})
    assert error_of(raised)["title"] == "Forgotten Email Not Subscribed"


def test_wrong_key_is_401_api_key_invalid(sim_server: SimServer, sim: httpx.Client) -> None:
    client = sdk_client(sim_server.base_url, api_key="ffffffffffffffffffffffffffffffff-us1")
    with pytest.raises(ApiClientError) as raised:
        client.lists.get_list(DEMO_LIST)
    assert raised.value.status_code == 401
    assert error_of(raised)["title"] == "API Key Invalid"


def test_ping_and_get_list(sdk: Any) -> None:
    assert sdk.ping.get() == {"health_status": "Everything's Chimpy!"}
    audience = sdk.lists.get_list(DEMO_LIST)
    assert (audience["id"], audience["name"], audience["double_optin"]) == (DEMO_LIST, "Tandem Demo", False)
    assert [a["id"] for a in sdk.lists.get_all_lists()["lists"]] == [DEMO_LIST]
