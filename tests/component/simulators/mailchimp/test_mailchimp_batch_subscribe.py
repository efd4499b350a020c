"""Batch subscribe (`POST /lists/{id}`, the SDK's `lists.batch_list_members`): per-member results inside a 200,
the same consent rules and webhooks as PUT, the 500 cap, one request in the stats and one in-flight slot."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import httpx
import pytest
from component.simulators.mailchimp.mailchimp_testkit import (
    DEMO_KEY,
    DEMO_LIST,
    Receiver,
    SimServer,
    md5,
    wait_for,
)
from mailchimp_marketing.api_client import ApiClientError


def put(api: httpx.Client, email: str, **body: Any) -> httpx.Response:
    return api.put(f"/lists/{DEMO_LIST}/members/{md5(email)}", json={"email_address": email, **body})


def get(api: httpx.Client, email: str) -> dict[str, Any]:
    response = api.get(f"/lists/{DEMO_LIST}/members/{md5(email)}")
    assert response.status_code == 200, response.text
    member: dict[str, Any] = response.json()
    return member


def batch(api: httpx.Client, members: list[dict[str, Any]], **query: Any) -> dict[str, Any]:
    update_existing = query.pop("update_existing", True)
    response = api.post(
        f"/lists/{DEMO_LIST}", params=query, json={"members": members, "update_existing": update_existing}
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def member_count(api: httpx.Client) -> int:
    return int(api.get(f"/lists/{DEMO_LIST}/members", params={"count": 1}).json()["total_items"])


def test_sdk_batch_mixes_created_updated_unchanged_and_per_member_errors(
    sdk: Any, api: httpx.Client, sim: httpx.Client
) -> None:
    assert put(api, "known@example.com", status="subscribed", merge_fields={"FNAME": "Old"}).status_code == 200
    assert put(api, "left@example.com", status="subscribed").status_code == 200
    # The contact's own unsubscribe (a link): only that puts the address in a compliance state.
    unsubscribe = f"/_sim/admin/lists/{DEMO_LIST}/members/{md5('left@example.com')}/unsubscribe"
    assert sim.post(unsubscribe, json={"source": "user"}).status_code == 200
    assert put(api, "gone@example.com", status="subscribed").status_code == 200
    assert api.post(f"/lists/{DEMO_LIST}/members/{md5('gone@example.com')}/actions/delete-permanent").is_success
    members = [
        {"email_address": "new@example.com", "status_if_new": "subscribed", "merge_fields": {"FNAME": "New"}},
        {"email_address": "known@example.com", "status_if_new": "subscribed", "merge_fields": {"FNAME": "Newer"}},
        {"email_address": "left@example.com", "status_if_new": "subscribed", "merge_fields": {"FNAME": "Left"}},
        {"email_address": "not-an-address", "status_if_new": "subscribed"},
        {"email_address": "bad@example.com", "status_if_new": "subscribed", "merge_fields": {"BIRTHDAY": "31/31"}},
        {"email_address": "left@example.com", "status": "subscribed"},
        {"email_address": "temp@mailinator.com", "status_if_new": "subscribed"},
        {"email_address": "gone@example.com", "status_if_new": "subscribed"},
        {"email_address": "nostatus@example.com"},
    ]

    result = sdk.lists.batch_list_members(DEMO_LIST, {"members": members, "update_existing": True})

    assert (result["total_created"], result["total_updated"], result["error_count"]) == (1, 2, 6)
    assert [(m["email_address"], m["status"]) for m in result["new_members"]] == [("new@example.com", "subscribed")]
    assert [(m["email_address"], m["status"], m["merge_fields"]["FNAME"]) for m in result["updated_members"]] == [
        ("known@example.com", "subscribed", "Newer"),
        ("left@example.com", "unsubscribed", "Left"),
    ]
    errors = [(e["email_address"], e["error_code"], e["field"], e["field_message"]) for e in result["errors"]]
    assert errors == [
        ("not-an-address", "ERROR_GENERIC", "", ""),
        ("bad@example.com", "ERROR_GENERIC", "BIRTHDAY", "Please enter a complete date (MM/DD)."),
        ("left@example.com", "ERROR_GENERIC", "", ""),
        ("temp@mailinator.com", "ERROR_GENERIC", "", ""),
        ("gone@example.com", "ERROR_GENERIC", "", ""),
        ("nostatus@example.com", "ERROR_GENERIC", "status", "Schema describes enum, NULL found instead"),
    ]
    details = {e["email_address"]: e["error"] for e in result["errors"]}
    assert details["not-an-address"] == "Please provide a valid email address."
    assert (
        details["temp@mailinator.com"]
        == "temp@mailinator.com looks fake or invalid, please enter a real email address."
    )
    assert "compliance state" in details["left@example.com"]
    assert "permanently deleted" in details["gone@example.com"]
    assert get(api, "left@example.com")["status"] == "unsubscribed"
    assert api.get(f"/lists/{DEMO_LIST}/members/{md5('bad@example.com')}").status_code == 404


def test_existing_members_without_update_existing_are_contact_exists_and_untouched(sdk: Any, api: httpx.Client) -> None:
    assert put(api, "known@example.com", status="subscribed", merge_fields={"FNAME": "Old"}).status_code == 200
    members = [
        {"email_address": "known@example.com", "status_if_new": "subscribed", "merge_fields": {"FNAME": "New"}},
        {"email_address": "fresh@example.com", "status_if_new": "subscribed"},
    ]

    result = sdk.lists.batch_list_members(DEMO_LIST, {"members": members})

    assert (result["total_created"], result["total_updated"], result["error_count"]) == (1, 0, 1)
    assert [(e["email_address"], e["error_code"], e["field"]) for e in result["errors"]] == [
        ("known@example.com", "ERROR_CONTACT_EXISTS", "email_address")
    ]
    assert get(api, "known@example.com")["merge_fields"]["FNAME"] == "Old"


def _put_outcome(api: httpx.Client, email: str, body: dict[str, Any]) -> tuple[str, str]:
    response = put(api, email, **body)
    if response.status_code == 200:
        return ("ok", str(response.json()["status"]))
    return ("error", str(response.json()["detail"]).replace(email, "<email>"))


def _batch_outcome(api: httpx.Client, email: str, body: dict[str, Any]) -> tuple[str, str]:
    result = batch(api, [{"email_address": email, **body}])
    if result["errors"]:
        return ("error", str(result["errors"][0]["error"]).replace(email, "<email>"))
    written = [*result["new_members"], *result["updated_members"]]
    return ("ok", str(written[0]["status"]))


def _prepare(api: httpx.Client, sim: httpx.Client, email: str, state: str) -> None:
    base, _, archived = state.partition("+")
    assert put(api, email, status="subscribed" if base == "cleaned" else base).status_code == 200
    if base == "cleaned":
        assert sim.post(f"/_sim/admin/lists/{DEMO_LIST}/members/{md5(email)}/clean", json={}).status_code == 200
    if archived:
        assert api.delete(f"/lists/{DEMO_LIST}/members/{md5(email)}").status_code == 204


@pytest.mark.parametrize(
    "state", ["subscribed", "unsubscribed", "cleaned", "pending", "subscribed+archived", "unsubscribed+archived"]
)
@pytest.mark.parametrize(
    "body",
    [
        {"status_if_new": "subscribed"},
        {"status_if_new": "pending"},
        {"status": "subscribed"},
        {"status": "pending"},
        {"status": "unsubscribed", "status_if_new": "subscribed"},
    ],
    ids=lambda body: ",".join(f"{k}={v}" for k, v in body.items()),
)
def test_a_batch_item_treats_an_existing_members_status_exactly_as_put(
    api: httpx.Client, sim: httpx.Client, state: str, body: dict[str, Any]
) -> None:
    _prepare(api, sim, "by-put@example.com", state)
    _prepare(api, sim, "by-batch@example.com", state)
    by_put = _put_outcome(api, "by-put@example.com", body)
    by_batch = _batch_outcome(api, "by-batch@example.com", body)
    assert by_batch == by_put
    if "status" not in body and not state.endswith("archived"):
        assert by_batch == ("ok", state), "status_if_new leaves an existing member's status as it was"


def test_skip_merge_validation_lifts_only_the_required_check(api: httpx.Client) -> None:
    created = api.post(f"/lists/{DEMO_LIST}/merge-fields", json={"name": "Plan", "type": "text", "required": True})
    assert created.status_code == 200, created.text
    item = {"email_address": "plan@example.com", "status_if_new": "subscribed"}

    refused = batch(api, [item])
    assert [(e["error_code"], e["field"]) for e in refused["errors"]] == [("ERROR_GENERIC", created.json()["tag"])]
    assert batch(api, [item], skip_merge_validation="true")["total_created"] == 1
    invalid = {**item, "email_address": "date@example.com", "merge_fields": {"BIRTHDAY": "13/45"}}
    assert batch(api, [invalid], skip_merge_validation="true")["error_count"] == 1


def test_duplicates_are_processed_in_order_unless_skip_duplicate_check(api: httpx.Client) -> None:
    twice = [
        {"email_address": "dup@example.com", "status_if_new": "subscribed", "merge_fields": {"FNAME": "First"}},
        {"email_address": "DUP@example.com", "status_if_new": "subscribed", "merge_fields": {"FNAME": "Second"}},
    ]
    in_order = batch(api, twice)
    assert (in_order["total_created"], in_order["total_updated"]) == (1, 1)
    assert get(api, "dup@example.com")["merge_fields"]["FNAME"] == "Second"

    renamed = [{**twice[0], "email_address": "once@example.com"}, {**twice[1], "email_address": "ONCE@example.com"}]
    first_wins = batch(api, renamed, skip_duplicate_check="true")
    assert (first_wins["total_created"], first_wins["total_updated"], first_wins["error_count"]) == (1, 0, 0)
    assert get(api, "once@example.com")["merge_fields"]["FNAME"] == "First"


def test_500_members_are_accepted_and_501_rejected_as_a_whole(sdk: Any, api: httpx.Client) -> None:
    members = [{"email_address": f"b{i}@example.com", "status_if_new": "subscribed"} for i in range(501)]
    with pytest.raises(ApiClientError) as raised:
        sdk.lists.batch_list_members(DEMO_LIST, {"members": members})
    assert raised.value.status_code == 400
    assert member_count(api) == 0, "a rejected batch writes nothing"

    accepted = sdk.lists.batch_list_members(DEMO_LIST, {"members": members[:500]})
    assert (accepted["total_created"], accepted["error_count"]) == (500, 0)
    assert member_count(api) == 500


def test_a_batch_is_one_request_in_the_stats(sdk: Any, sim: httpx.Client) -> None:
    members = [{"email_address": f"s{i}@example.com", "status_if_new": "subscribed"} for i in range(20)]
    sdk.lists.batch_list_members(DEMO_LIST, {"members": members})
    stats = sim.get("/_sim/stats").json()
    assert stats["requests"] == {"POST batch subscribe": {"200": 1}}
    assert stats["accounts"]["tandemdemo"]["peak_in_flight"] == 1


def test_stats_count_members_written_by_each_route(api: httpx.Client, sim: httpx.Client) -> None:
    members = [{"email_address": f"w{i}@example.com", "status_if_new": "subscribed"} for i in range(5)]
    members.append({"email_address": "not-an-address", "status_if_new": "subscribed"})
    result = batch(api, members)
    assert result["error_count"] == 1
    assert put(api, "w0@example.com", status_if_new="subscribed").status_code == 200
    written = sim.get("/_sim/stats").json()["members_written"]
    assert written == {"POST batch subscribe": 5, "PUT member": 1}, "a member in error is not written"


async def test_a_batch_holds_one_in_flight_slot_of_ten(sim_server: SimServer, sim: httpx.Client) -> None:
    controls = {"route": "*", "latency_ms": 1500}
    (await asyncio.to_thread(sim.post, "/_sim/controls", json=controls)).raise_for_status()
    members = [{"email_address": f"slot{i}@example.com", "status_if_new": "subscribed"} for i in range(100)]
    async with httpx.AsyncClient(base_url=f"{sim_server.base_url}/3.0", auth=("x", DEMO_KEY), timeout=30) as client:
        held = [asyncio.ensure_future(client.post(f"/lists/{DEMO_LIST}", json={"members": members}))]
        held += [asyncio.ensure_future(client.get("/lists")) for _ in range(9)]
        await asyncio.to_thread(
            wait_for,
            lambda: sim.get("/_sim/stats").json()["accounts"].get("tandemdemo", {}).get("in_flight") == 10,
            "the batch and 9 reads in flight",
        )
        eleventh = await client.get("/lists")
        answers = await asyncio.gather(*held)
    assert eleventh.status_code == 429
    assert Counter(r.status_code for r in answers) == {200: 10}
    assert answers[0].json()["total_created"] == 100


def test_a_batch_fires_the_webhooks_the_same_puts_would_fire(
    api: httpx.Client, sim: httpx.Client, receiver: Receiver
) -> None:
    assert put(api, "same@example.com", status="subscribed", merge_fields={"FNAME": "Same"}).status_code == 200
    assert put(api, "edit@example.com", status="subscribed", merge_fields={"FNAME": "Before"}).status_code == 200
    assert put(api, "quit@example.com", status="subscribed").status_code == 200
    body = {"url": receiver.url, "sources": {"user": False, "admin": False, "api": True}}
    assert api.post(f"/lists/{DEMO_LIST}/webhooks", json=body).status_code == 200

    result = batch(
        api,
        [
            {"email_address": "joins@example.com", "status_if_new": "subscribed"},
            {"email_address": "same@example.com", "status_if_new": "subscribed", "merge_fields": {"FNAME": "Same"}},
            {"email_address": "edit@example.com", "status_if_new": "subscribed", "merge_fields": {"FNAME": "After"}},
            {"email_address": "broken@example.com", "status_if_new": "subscribed", "ip_opt": "not-an-ip"},
            {"email_address": "quit@example.com", "status": "unsubscribed"},
        ],
    )
    assert result["error_count"] == 1
    # A sentinel PUT afterwards: each webhook's deliveries go out in order, so once it arrives all before it have.
    assert put(api, "sentinel@example.com", status_if_new="subscribed").status_code == 200
    fired: list[tuple[str, str]] = []
    while not fired or fired[-1] != ("subscribe", "sentinel@example.com"):
        fields = receiver.next().fields()
        fired.append((fields["type"], fields.get("data[email]", "")))

    assert fired == [
        ("subscribe", "joins@example.com"),
        ("profile", "edit@example.com"),
        ("unsubscribe", "quit@example.com"),
        ("subscribe", "sentinel@example.com"),
    ]


@pytest.mark.parametrize(
    ("item", "field", "message"),
    [
        ({"status": "subscribd"}, "status", "Data presented is not one of the accepted values"),
        ({"status_if_new": "maybe"}, "status_if_new", "Data presented is not one of the accepted values"),
        ({"status_if_new": "subscribed", "merge_fields": "Ada"}, "merge_fields", "Schema describes dict"),
        ({"status_if_new": "subscribed", "vip": "very"}, "vip", "Schema describes bool"),
    ],
    ids=["bad-status", "bad-status-if-new", "merge-fields-not-an-object", "vip-not-a-bool"],
)
def test_a_schema_invalid_item_fails_the_whole_call_naming_the_item(
    sdk: Any, api: httpx.Client, item: dict[str, Any], field: str, message: str
) -> None:
    # brandonseydel/MailChimp.Net #567, rudderlabs #1223 (mailchimp-api.md §10): a bad status or a wrong type is not
    # a per-member error inside a 200 but a 400 for the whole call, nothing written.
    members = [
        {"email_address": "fine@example.com", "status_if_new": "subscribed"},
        {"email_address": "also-fine@example.com", "status_if_new": "subscribed"},
        {"email_address": "broken@example.com", **item},
    ]
    with pytest.raises(ApiClientError) as raised:
        sdk.lists.batch_list_members(DEMO_LIST, {"members": members, "update_existing": True})
    assert raised.value.status_code == 400
    error = json.loads(raised.value.text)
    assert error["title"] == "Invalid Resource"
    assert [e["field"] for e in error["errors"]] == [f"members.item:2.{field}"]
    assert error["errors"][0]["message"].startswith(message)
    assert member_count(api) == 0, "a call refused as a whole writes nothing"
