"""Audiences created, edited and deleted over the API; the members list's filters and sort; member tags; batch
operations answered as not simulated; a batch subscribe's latency growing with its members."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from component.simulators.mailchimp.mailchimp_testkit import DEMO_LIST, md5
from mailchimp_marketing.api_client import ApiClientError

NEW_AUDIENCE = {
    "name": "First day",
    "contact": {
        "company": "Acme Training",
        "address1": "1 Main St",
        "city": "Leeds",
        "state": "",
        "zip": "LS1 1AA",
        "country": "GB",
    },
    "permission_reminder": "You signed up on our website.",
    "campaign_defaults": {
        "from_name": "Acme",
        "from_email": "news@acme.test",
        "subject": "",
        "language": "en",
    },
    "email_type_option": False,
}


def put(api: httpx.Client, email: str, list_id: str = DEMO_LIST, **body: Any) -> dict[str, Any]:
    response = api.put(f"/lists/{list_id}/members/{md5(email)}", json={"email_address": email, **body})
    assert response.status_code == 200, response.text
    member: dict[str, Any] = response.json()
    return member


def listed(api: httpx.Client, **params: Any) -> list[str]:
    response = api.get(f"/lists/{DEMO_LIST}/members", params=params)
    assert response.status_code == 200, response.text
    return [m["email_address"] for m in response.json()["members"]]


# --- audiences (reference §10: POST /lists; a new audience's default merge fields) ---


def test_create_list_makes_an_audience_with_the_default_merge_fields(sdk: Any, api: httpx.Client) -> None:
    created = sdk.lists.create_list({**NEW_AUDIENCE, "double_optin": True})
    assert (created["name"], created["double_optin"]) == ("First day", True)
    assert len(created["id"]) == 10
    fields = sdk.lists.get_list_merge_fields(created["id"], count=100)["merge_fields"]
    assert [(f["tag"], f["type"]) for f in fields] == [
        ("FNAME", "text"),
        ("LNAME", "text"),
        ("ADDRESS", "address"),
        ("PHONE", "phone"),
        ("BIRTHDAY", "birthday"),
    ]
    assert created["id"] in [a["id"] for a in sdk.lists.get_all_lists()["lists"]]
    # A backfill into the fresh audience works at once.
    member = put(api, "first@example.com", created["id"], status_if_new="pending", merge_fields={"FNAME": "F"})
    assert member["status"] == "pending"


def test_create_list_without_its_required_fields_is_invalid(sdk: Any) -> None:
    with pytest.raises(ApiClientError) as raised:
        sdk.lists.create_list({"name": "Only a name"})
    body = json.loads(raised.value.text)
    assert (raised.value.status_code, body["title"]) == (400, "Invalid Resource")
    assert {e["field"] for e in body["errors"]} >= {"contact", "permission_reminder", "campaign_defaults"}


def test_update_and_delete_list(sdk: Any, api: httpx.Client) -> None:
    created = sdk.lists.create_list(NEW_AUDIENCE)
    updated = sdk.lists.update_list(created["id"], {"name": "Renamed", "double_optin": True})
    assert (updated["name"], updated["double_optin"]) == ("Renamed", True)
    put(api, "gone-with-it@example.com", created["id"], status="subscribed")
    sdk.lists.delete_list(created["id"])
    assert api.get(f"/lists/{created['id']}").status_code == 404
    assert api.get(f"/lists/{created['id']}/members").status_code == 404
    assert api.get(f"/lists/{DEMO_LIST}").status_code == 200


# --- members list (SDK 3.0.80 get_list_members_info parameters) ---


def test_members_sorted_by_last_changed_either_way(sdk: Any, api: httpx.Client) -> None:
    for email in ("first@example.com", "second@example.com"):
        put(api, email, status="subscribed")
        time.sleep(1.05)  # last_changed has second resolution
    put(api, "first@example.com", status="subscribed", merge_fields={"FNAME": "Later"})
    ascending = sdk.lists.get_list_members_info(DEMO_LIST, sort_field="last_changed", sort_dir="ASC")
    assert [m["email_address"] for m in ascending["members"]] == ["second@example.com", "first@example.com"]
    assert listed(api, sort_field="last_changed", sort_dir="DESC") == ["first@example.com", "second@example.com"]
    assert listed(api, sort_field="timestamp_opt", sort_dir="DESC") == ["second@example.com", "first@example.com"]
    assert api.get(f"/lists/{DEMO_LIST}/members", params={"sort_field": "name"}).status_code == 400


def test_members_filtered_by_status_since_last_changed_and_unsubscribed_since(sdk: Any, api: httpx.Client) -> None:
    put(api, "early-quit@example.com", status="subscribed")
    sdk.lists.update_list_member(DEMO_LIST, md5("early-quit@example.com"), {"status": "unsubscribed"})
    put(api, "stays@example.com", status="subscribed")
    time.sleep(1.05)
    cut = put(api, "late-quit@example.com", status="subscribed")["last_changed"]
    sdk.lists.update_list_member(DEMO_LIST, md5("late-quit@example.com"), {"status": "unsubscribed"})

    unsubscribed = sdk.lists.get_list_members_info(DEMO_LIST, status="unsubscribed")
    assert {m["email_address"] for m in unsubscribed["members"]} == {"early-quit@example.com", "late-quit@example.com"}
    since = sdk.lists.get_list_members_info(DEMO_LIST, status="unsubscribed", unsubscribed_since=cut)
    assert [m["email_address"] for m in since["members"]] == ["late-quit@example.com"]
    assert listed(api, since_last_changed=cut) == ["late-quit@example.com"]
    assert listed(api, status="subscribed") == ["stays@example.com"]


def test_member_tags_can_be_read(sdk: Any, api: httpx.Client) -> None:
    put(api, "tagged@example.com", status="subscribed", tags=["vip", "course-2026"])
    tags = sdk.lists.get_list_member_tags(DEMO_LIST, md5("tagged@example.com"))
    assert ([t["name"] for t in tags["tags"]], tags["total_items"]) == (["vip", "course-2026"], 2)
    assert api.get(f"/lists/{DEMO_LIST}/members/{md5('nobody@example.com')}/tags").status_code == 404


# --- batch operations: explicitly not simulated ---


def test_batch_operations_answer_not_simulated_never_a_bare_404(sdk: Any, api: httpx.Client) -> None:
    operations = {"operations": [{"method": "GET", "path": f"/lists/{DEMO_LIST}"}]}
    with pytest.raises(ApiClientError) as raised:
        sdk.batches.start(operations)
    body = json.loads(raised.value.text)
    assert (raised.value.status_code, body["title"]) == (501, "Not Simulated")
    assert "not simulated" in body["detail"]
    for path in ("/batches", "/batches/abc123"):
        assert api.get(path).json()["title"] == "Not Simulated"


# --- latency model ---


def test_a_batch_subscribes_latency_grows_with_its_members(api: httpx.Client, sim: httpx.Client) -> None:
    def timed(n: int, prefix: str) -> float:
        members = [{"email_address": f"{prefix}{i}@example.com", "status_if_new": "subscribed"} for i in range(n)]
        started = time.perf_counter()
        response = api.post(f"/lists/{DEMO_LIST}", json={"members": members})
        assert response.status_code == 200, response.text
        return time.perf_counter() - started

    sim.post("/_sim/controls", json={"latency_per_member_ms": 4}).raise_for_status()
    assert sim.get("/_sim/controls").json()["latency_per_member_ms"] == 4
    small, large = timed(5, "small"), timed(250, "large")
    assert large >= 1.0, "250 members at 4 ms each"
    assert large - small >= 0.9
    sim.delete("/_sim/controls").raise_for_status()
    assert sim.get("/_sim/controls").json()["latency_per_member_ms"] is None
