"""Members over HTTP: auth, consent rules, email changes, merge validation, listing, persistence, accounts."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from component.simulators.mailchimp.mailchimp_testkit import (
    DEMO_KEY,
    DEMO_LIST,
    DOI_LIST,
    SECOND_KEY,
    SimServer,
    md5,
    sdk_client,
    sim_settings,
)
from mailchimp_marketing.api_client import ApiClientError

PROBLEM = "application/problem+json; charset=utf-8"


def put(api: httpx.Client, email: str, list_id: str = DEMO_LIST, key: str | None = None, **body: Any) -> httpx.Response:
    return api.put(f"/lists/{list_id}/members/{key or md5(email)}", json={"email_address": email, **body})


def problem(response: httpx.Response, status: int, title: str) -> dict[str, Any]:
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert (body["status"], body["title"]) == (status, title), body
    assert response.status_code == status
    return body


# --- auth ---


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Basic " + base64.b64encode(f"anystring:{DEMO_KEY}".encode()).decode()},
        {"Authorization": f"Bearer {DEMO_KEY}"},
        {"Authorization": f"Bearer {DEMO_KEY}", "Host": "us1.api.mailchimp.com"},
    ],
)
def test_accepted_credentials(sim_server: SimServer, sim: httpx.Client, headers: dict[str, str]) -> None:
    assert httpx.get(f"{sim_server.base_url}/3.0/lists", headers=headers).status_code == 200


@pytest.mark.parametrize(
    ("headers", "title"),
    [
        ({}, "API Key Missing"),
        ({"Authorization": "Bearer nope-us1"}, "API Key Invalid"),
        ({"Authorization": f"Bearer {DEMO_KEY}", "Host": "us6.api.mailchimp.com"}, "API Key Invalid"),
        ({"Authorization": "Basic !!notbase64"}, "API Key Invalid"),
    ],
)
def test_rejected_credentials(sim_server: SimServer, sim: httpx.Client, headers: dict[str, str], title: str) -> None:
    problem(httpx.get(f"{sim_server.base_url}/3.0/lists", headers=headers), 401, title)


def test_health_needs_no_auth(sim: httpx.Client) -> None:
    response = sim.get("/_sim/health")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


# --- accounts ---


def test_second_account_sees_only_its_double_opt_in_audience(second: httpx.Client, api: httpx.Client) -> None:
    lists = second.get("/lists").json()["lists"]
    assert [(a["id"], a["double_optin"]) for a in lists] == [(DOI_LIST, True)]
    problem(second.get(f"/lists/{DEMO_LIST}"), 404, "Resource Not Found")
    problem(api.get(f"/lists/{DOI_LIST}/members"), 404, "Resource Not Found")
    assert put(second, "d@example.com", DOI_LIST, status_if_new="pending").json()["status"] == "pending"


def test_second_account_key_is_bound_to_its_dc(sim_server: SimServer, second: httpx.Client) -> None:
    headers = {"Authorization": f"Bearer {SECOND_KEY}", "Host": "us1.api.mailchimp.com"}
    problem(httpx.get(f"{sim_server.base_url}/3.0/lists", headers=headers), 401, "API Key Invalid")


def test_an_audience_cannot_be_claimed_by_another_account(sim: httpx.Client) -> None:
    body = {"account_id": "thief", "api_keys": ["thief-us1"], "lists": [{"id": DEMO_LIST, "name": "Mine"}]}
    assert sim.post("/_sim/accounts", json=body).status_code == 409


# --- PUT / POST ---


def test_put_accepts_the_email_itself_as_the_key(api: httpx.Client) -> None:
    created = put(api, "Key@Example.com", key="Key@Example.com", status_if_new="subscribed").json()
    assert created["id"] == md5("key@example.com")


def test_put_requires_email_address(api: httpx.Client) -> None:
    body = problem(api.put(f"/lists/{DEMO_LIST}/members/{md5('x@example.com')}", json={}), 400, "Invalid Resource")
    assert body["errors"][0]["field"] == "email_address"


def test_create_without_any_status_is_invalid(api: httpx.Client) -> None:
    body = problem(put(api, "nostatus@example.com"), 400, "Invalid Resource")
    assert body["errors"][0]["field"] == "status"


def test_a_malformed_address_is_not_a_valid_email_address(api: httpx.Client) -> None:
    body = problem(put(api, "AAAAA", key=md5("AAAAA"), status="subscribed"), 400, "Invalid Resource")
    assert body["detail"] == "Please provide a valid email address."


@pytest.mark.parametrize("email", ["someone@mailinator.com", "x@yopmail.com", "x@mail.yopmail.com"])
def test_an_address_at_a_disposable_domain_looks_fake(sdk: Any, email: str) -> None:
    with pytest.raises(ApiClientError) as raised:
        sdk.lists.set_list_member(DEMO_LIST, md5(email), {"email_address": email, "status_if_new": "subscribed"})
    body = json.loads(raised.value.text)
    assert (raised.value.status_code, body["title"]) == (400, "Invalid Resource")
    assert body["detail"] == f"{email} looks fake or invalid, please enter a real email address."


def test_example_domains_are_accepted_unless_the_setting_adds_them(tmp_path: Path) -> None:
    settings = sim_settings(tmp_path).model_copy(update={"reject_example_domains": True})
    with SimServer(settings) as server:
        client = sdk_client(server.base_url)
        for email in ("ann@example.com", "ann@shop.example"):
            with pytest.raises(ApiClientError) as raised:
                client.lists.set_list_member(DEMO_LIST, md5(email), {"email_address": email, "status": "subscribed"})
            assert "looks fake or invalid" in json.loads(raised.value.text)["detail"]


def test_example_domains_are_accepted_by_default(api: httpx.Client) -> None:
    assert put(api, "ann@example.com", status="subscribed").status_code == 200


def test_malformed_json_is_a_parse_exception(api: httpx.Client) -> None:
    response = api.put(f"/lists/{DEMO_LIST}/members/{md5('a@b.co')}", content=b"{nope")
    problem(response, 400, "JSON Parse Exception")


def test_post_creates_and_refuses_an_existing_member(api: httpx.Client) -> None:
    body = {"email_address": "post@example.com", "status": "subscribed"}
    created = api.post(f"/lists/{DEMO_LIST}/members", json=body)
    assert created.status_code == 200
    detail = problem(api.post(f"/lists/{DEMO_LIST}/members", json=body), 400, "Member Exists")["detail"]
    assert detail == "post@example.com is already a list member. Use PUT to insert or update list members."


def test_post_needs_status_not_status_if_new(api: httpx.Client) -> None:
    response = api.post(
        f"/lists/{DEMO_LIST}/members", json={"email_address": "p@example.com", "status_if_new": "subscribed"}
    )
    problem(response, 400, "Invalid Resource")


def test_identical_put_does_not_move_last_changed(api: httpx.Client) -> None:
    first = put(api, "same@example.com", status_if_new="subscribed", merge_fields={"FNAME": "S"}).json()
    second = put(api, "same@example.com", status_if_new="subscribed", merge_fields={"FNAME": "S"}).json()
    assert second["last_changed"] == first["last_changed"]


def test_invalid_ip_is_rejected(api: httpx.Client) -> None:
    body = problem(put(api, "ip@example.com", status="subscribed", ip_signup="999.1.1.1"), 400, "Invalid Resource")
    assert body["errors"] == [{"field": "ip_signup", "message": "This value is not a valid IP address."}]


# --- consent ---


@pytest.mark.parametrize("status", ["unsubscribed", "cleaned"])
def test_status_if_new_never_resubscribes(api: httpx.Client, status: str) -> None:
    put(api, "c@example.com", status=status)
    again = put(api, "c@example.com", status_if_new="subscribed", merge_fields={"FNAME": "C"})
    assert again.status_code == 200
    assert again.json()["status"] == status


def _self_unsubscribe(sim: httpx.Client, email: str) -> None:
    """The contact clicks an unsubscribe link."""
    url = f"/_sim/admin/lists/{DEMO_LIST}/members/{md5(email)}/unsubscribe"
    assert sim.post(url, json={"source": "user"}).status_code == 200


def _clean(sim: httpx.Client, email: str) -> None:
    assert sim.post(f"/_sim/admin/lists/{DEMO_LIST}/members/{md5(email)}/clean", json={}).status_code == 200


@pytest.mark.parametrize("how", ["self-unsubscribed", "cleaned"])
def test_explicit_subscribe_of_a_compliance_state_member_fails(sdk: Any, sim: httpx.Client, how: str) -> None:
    email = "c@example.com"
    sdk.lists.set_list_member(DEMO_LIST, md5(email), {"email_address": email, "status": "subscribed"})
    (_self_unsubscribe if how == "self-unsubscribed" else _clean)(sim, email)
    for call in (sdk.lists.set_list_member, sdk.lists.update_list_member):
        with pytest.raises(ApiClientError) as raised:
            call(DEMO_LIST, md5(email), {"email_address": email, "status": "subscribed"})
        body = json.loads(raised.value.text)
        assert (raised.value.status_code, body["title"]) == (400, "Member In Compliance State")
        assert body["detail"] == (
            "c@example.com is in a compliance state due to unsubscribe, bounce, or compliance review "
            "and cannot be subscribed."
        )


@pytest.mark.parametrize("who", ["api", "admin"])
def test_an_api_or_admin_unsubscribe_can_be_undone_through_the_api(sdk: Any, sim: httpx.Client, who: str) -> None:
    # Recorded real answers (grouparoo fixtures, veda-consulting/mailchimp #374; mailchimp-api.md §10).
    email = f"{who}@example.com"
    sdk.lists.set_list_member(DEMO_LIST, md5(email), {"email_address": email, "status": "subscribed"})
    if who == "api":
        unsubscribed = sdk.lists.update_list_member(DEMO_LIST, md5(email), {"status": "unsubscribed"})
        assert unsubscribed["status"] == "unsubscribed"
    else:
        url = f"/_sim/admin/lists/{DEMO_LIST}/members/{md5(email)}/unsubscribe"
        assert sim.post(url, json={"source": "admin"}).status_code == 200
    again = sdk.lists.set_list_member(DEMO_LIST, md5(email), {"email_address": email, "status": "subscribed"})
    assert again["status"] == "subscribed"
    sdk.lists.update_list_member(DEMO_LIST, md5(email), {"status": "unsubscribed"})
    assert sdk.lists.update_list_member(DEMO_LIST, md5(email), {"status": "subscribed"})["status"] == "subscribed"


def test_a_self_unsubscribe_survives_archive_and_re_add(sdk: Any, sim: httpx.Client, api: httpx.Client) -> None:
    email = "selfarch@example.com"
    sdk.lists.set_list_member(DEMO_LIST, md5(email), {"email_address": email, "status": "subscribed"})
    _self_unsubscribe(sim, email)
    sdk.lists.delete_list_member(DEMO_LIST, md5(email))
    problem(put(api, email, status="subscribed"), 400, "Member In Compliance State")


# --- member lifecycle (archive, un-archive, email change) ---


@pytest.mark.parametrize("state", ["pending", "cleaned", "archived"])
def test_a_pending_cleaned_or_archived_member_cannot_be_archived(
    sdk: Any, sim: httpx.Client, api: httpx.Client, state: str
) -> None:
    # grouparoo fixtures; hitobito #1072 (mailchimp-api.md §10).
    email = f"{state}@example.com"
    first = "pending" if state == "pending" else "subscribed"
    sdk.lists.set_list_member(DEMO_LIST, md5(email), {"email_address": email, "status": first})
    if state == "cleaned":
        _clean(sim, email)
    if state == "archived":
        sdk.lists.delete_list_member(DEMO_LIST, md5(email))
    with pytest.raises(ApiClientError) as raised:
        sdk.lists.delete_list_member(DEMO_LIST, md5(email))
    body = json.loads(raised.value.text)
    assert (raised.value.status_code, body["title"]) == (405, "Method Not Allowed")
    assert body["detail"].startswith(
        "This list member cannot be removed. Can not archive a contact that is bounced, pending or archived"
    )
    assert body["detail"].endswith("See the Allow header for this resource's available methods.")
    assert api.delete(f"/lists/{DEMO_LIST}/members/{md5(email)}").headers["allow"] == "GET, PUT"


def test_patch_status_subscribed_un_archives(sdk: Any, api: httpx.Client) -> None:
    # Stack Overflow 63584277 (mailchimp-api.md §10).
    email = "back@example.com"
    created = sdk.lists.set_list_member(DEMO_LIST, md5(email), {"email_address": email, "status": "subscribed"})
    sdk.lists.delete_list_member(DEMO_LIST, md5(email))
    assert sdk.lists.get_list_member(DEMO_LIST, md5(email))["status"] == "archived"
    back = sdk.lists.update_list_member(DEMO_LIST, md5(email), {"status": "subscribed"})
    assert (back["status"], back["contact_id"]) == ("subscribed", created["contact_id"])
    listed = api.get(f"/lists/{DEMO_LIST}/members").json()["members"]
    assert [m["email_address"] for m in listed] == [email]


@pytest.mark.parametrize("state", ["unsubscribed", "cleaned", "pending", "archived"])
def test_an_email_change_of_a_member_who_is_not_subscribed_is_refused(
    sdk: Any, sim: httpx.Client, api: httpx.Client, state: str
) -> None:
    # ibericode/mailchimp-user-sync #96 (one 2017 report; mailchimp-api.md §10).
    email = f"{state}-old@example.com"
    first = "pending" if state == "pending" else "subscribed"
    sdk.lists.set_list_member(DEMO_LIST, md5(email), {"email_address": email, "status": first})
    if state == "unsubscribed":
        sdk.lists.update_list_member(DEMO_LIST, md5(email), {"status": "unsubscribed"})
    if state == "cleaned":
        _clean(sim, email)
    if state == "archived":
        sdk.lists.delete_list_member(DEMO_LIST, md5(email))
    new = f"{state}-new@example.com"
    for call in (sdk.lists.update_list_member, sdk.lists.set_list_member):
        with pytest.raises(ApiClientError) as raised:
            call(DEMO_LIST, md5(email), {"email_address": new})
        body = json.loads(raised.value.text)
        assert (raised.value.status_code, body["title"]) == (400, "Invalid Resource")
        assert body["detail"] == (
            f'This member\'s status is "{state}." You can only update email addresses for members with a status '
            'of "subscribed."'
        )
    assert api.get(f"/lists/{DEMO_LIST}/members/{md5(new)}").status_code == 404


def test_unsubscribed_member_may_be_sent_a_confirmation(api: httpx.Client) -> None:
    put(api, "u@example.com", status="unsubscribed")
    assert put(api, "u@example.com", status="pending").json()["status"] == "pending"


def test_archived_unsubscribe_survives_a_re_add(api: httpx.Client) -> None:
    put(api, "au@example.com", status="unsubscribed")
    assert api.delete(f"/lists/{DEMO_LIST}/members/{md5('au@example.com')}").status_code == 204
    readded = put(api, "au@example.com", status_if_new="subscribed").json()
    assert readded["status"] == "unsubscribed"


def test_archived_member_can_be_re_added_with_put(api: httpx.Client) -> None:
    put(api, "ar@example.com", status="subscribed", merge_fields={"FNAME": "Ar"})
    api.delete(f"/lists/{DEMO_LIST}/members/{md5('ar@example.com')}")
    assert put(api, "ar@example.com", status_if_new="subscribed").json()["status"] == "subscribed"


def test_forgotten_address_cannot_come_back_by_email_change_either(api: httpx.Client) -> None:
    put(api, "f@example.com", status="subscribed")
    put(api, "g@example.com", status="subscribed")
    api.post(f"/lists/{DEMO_LIST}/members/{md5('f@example.com')}/actions/delete-permanent")
    moved = api.patch(f"/lists/{DEMO_LIST}/members/{md5('g@example.com')}", json={"email_address": "f@example.com"})
    problem(moved, 400, "Forgotten Email Not Subscribed")
    problem(api.get(f"/lists/{DEMO_LIST}/members/{md5('f@example.com')}"), 404, "Resource Not Found")


# --- email change via PUT ---


def test_put_with_old_hash_and_new_address_moves_the_member(api: httpx.Client) -> None:
    original = put(api, "was@example.com", status="subscribed").json()
    moved = put(api, "now@example.com", key=md5("was@example.com")).json()
    assert (moved["id"], moved["email_address"], moved["contact_id"]) == (
        md5("now@example.com"),
        "now@example.com",
        original["contact_id"],
    )
    assert api.get(f"/lists/{DEMO_LIST}/members/{md5('was@example.com')}").status_code == 404


def test_put_moving_onto_an_existing_address_is_member_exists(api: httpx.Client) -> None:
    put(api, "a1@example.com", status="subscribed")
    put(api, "a2@example.com", status="subscribed")
    problem(put(api, "a2@example.com", key=md5("a1@example.com")), 400, "Member Exists")


def test_put_with_a_wrongly_hashed_key_for_an_existing_address_is_member_exists(api: httpx.Client) -> None:
    put(api, "case@example.com", status="subscribed")
    unlowered = __import__("hashlib").md5(b"Case@Example.com").hexdigest()
    problem(put(api, "Case@Example.com", key=unlowered, status="subscribed"), 400, "Member Exists")


def test_put_with_an_unknown_hash_and_a_new_address_is_invalid(api: httpx.Client) -> None:
    problem(put(api, "fresh@example.com", key=md5("someone@example.com"), status="subscribed"), 400, "Invalid Resource")


def test_patch_of_a_missing_member_is_404(api: httpx.Client) -> None:
    problem(api.patch(f"/lists/{DEMO_LIST}/members/{md5('no@example.com')}", json={}), 404, "Resource Not Found")


# --- merge fields over HTTP ---


def test_address_must_have_its_required_parts(api: httpx.Client) -> None:
    body = problem(
        put(api, "ad@example.com", status="subscribed", merge_fields={"ADDRESS": {"addr1": "1 Main St"}}),
        400,
        "Invalid Resource",
    )
    assert body["errors"] == [
        {"field": "merge_fields.ADDRESS", "message": "Data did not match any of the schemas described in anyOf."}
    ]


def test_long_text_is_truncated(api: httpx.Client) -> None:
    member = put(api, "long@example.com", status="subscribed", merge_fields={"COMPANY": "x" * 300}).json()
    assert member["merge_fields"]["COMPANY"] == "x" * 255


def test_merge_field_patch_and_delete(api: httpx.Client) -> None:
    fields = api.get(f"/lists/{DEMO_LIST}/merge-fields").json()["merge_fields"]
    company = next(f for f in fields if f["tag"] == "COMPANY")
    patched = api.patch(f"/lists/{DEMO_LIST}/merge-fields/{company['merge_id']}", json={"required": True}).json()
    assert patched["required"] is True
    assert api.get(f"/lists/{DEMO_LIST}/merge-fields", params={"required": "true"}).json()["total_items"] == 1
    assert api.delete(f"/lists/{DEMO_LIST}/merge-fields/{company['merge_id']}").status_code == 204
    member = put(api, "nocompany@example.com", status="subscribed").json()
    assert "COMPANY" not in member["merge_fields"]


def test_duplicate_merge_tag_is_rejected(api: httpx.Client) -> None:
    response = api.post(
        f"/lists/{DEMO_LIST}/merge-fields", json={"name": "Company 2", "type": "text", "tag": "COMPANY"}
    )
    problem(response, 400, "Invalid Resource")


# --- listing ---


def test_since_last_changed_and_archived_listing(api: httpx.Client) -> None:
    kept = put(api, "k@example.com", status="subscribed").json()
    put(api, "z@example.com", status="subscribed")
    api.delete(f"/lists/{DEMO_LIST}/members/{md5('z@example.com')}")
    listed = api.get(f"/lists/{DEMO_LIST}/members", params={"since_last_changed": kept["last_changed"]}).json()
    assert [m["email_address"] for m in listed["members"]] == ["k@example.com"]
    future = api.get(f"/lists/{DEMO_LIST}/members", params={"since_last_changed": "2999-01-01T00:00:00+00:00"})
    assert future.json()["total_items"] == 0
    archived = api.get(f"/lists/{DEMO_LIST}/members", params={"status": "archived"}).json()
    assert [(m["email_address"], m["status"]) for m in archived["members"]] == [("z@example.com", "archived")]


def test_count_is_capped_at_1000(api: httpx.Client) -> None:
    members = [{"email_address": f"n{i}@example.com", "status": "subscribed"} for i in range(500)]
    for chunk in (
        members,
        [{**m, "email_address": "o" + m["email_address"]} for m in members],
        [{"email_address": "last@example.com", "status": "subscribed"}],
    ):
        assert api.post(f"/lists/{DEMO_LIST}", json={"members": chunk}).json()["error_count"] == 0
    listed = api.get(f"/lists/{DEMO_LIST}/members", params={"count": 5000}).json()
    assert (len(listed["members"]), listed["total_items"]) == (1000, 1001)


def test_bad_since_last_changed_is_invalid(api: httpx.Client) -> None:
    problem(api.get(f"/lists/{DEMO_LIST}/members", params={"since_last_changed": "last week"}), 400, "Invalid Resource")


def test_audience_stats_count_statuses(api: httpx.Client) -> None:
    put(api, "s1@example.com", status="subscribed")
    put(api, "s2@example.com", status="unsubscribed")
    stats = api.get(f"/lists/{DEMO_LIST}").json()["stats"]
    assert (stats["member_count"], stats["unsubscribe_count"]) == (1, 1)


def test_tags_endpoint_adds_and_removes(api: httpx.Client) -> None:
    put(api, "t@example.com", status="subscribed", tags=["vip"])
    url = f"/lists/{DEMO_LIST}/members/{md5('t@example.com')}"
    body = {"tags": [{"name": "new", "status": "active"}, {"name": "vip", "status": "inactive"}]}
    assert api.post(f"{url}/tags", json=body).status_code == 204
    assert [t["name"] for t in api.get(url).json()["tags"]] == ["new"]


# --- admin edits, persistence, reset ---


def test_admin_edits_need_no_auth_and_record_admin_add(sim: httpx.Client) -> None:
    url = f"/_sim/admin/lists/{DEMO_LIST}/members/ui@example.com"
    created = sim.put(url, json={"email_address": "ui@example.com", "status": "subscribed"}).json()
    assert created["source"] == "Admin Add"
    unsubscribed = sim.post(f"{url}/unsubscribe", json={}).json()
    assert unsubscribed["status"] == "unsubscribed"
    assert sim.post(f"/_sim/admin/lists/{DEMO_LIST}/members/ui@example.com/clean").json()["status"] == "cleaned"


def test_reset_wipes_members_and_extra_accounts(sim: httpx.Client, api: httpx.Client, second: httpx.Client) -> None:
    put(api, "r@example.com", status="subscribed")
    sim.post("/_sim/reset").raise_for_status()
    assert api.get(f"/lists/{DEMO_LIST}/members").json()["total_items"] == 0
    problem(second.get("/lists"), 401, "API Key Invalid")


def test_data_and_seed_survive_a_restart(tmp_path: Path) -> None:
    auth = ("x", DEMO_KEY)
    with SimServer(sim_settings(tmp_path)) as server:
        base = f"{server.base_url}/3.0"
        httpx.put(
            f"{base}/lists/{DEMO_LIST}/members/{md5('keep@example.com')}",
            json={"email_address": "keep@example.com", "status": "subscribed"},
            auth=auth,
        ).raise_for_status()
        httpx.post(
            f"{base}/lists/{DEMO_LIST}/merge-fields", json={"name": "Extra", "type": "text", "tag": "EXTRA"}, auth=auth
        ).raise_for_status()
    with SimServer(sim_settings(tmp_path)) as server:
        base = f"{server.base_url}/3.0"
        member = httpx.get(f"{base}/lists/{DEMO_LIST}/members/{md5('keep@example.com')}", auth=auth)
        assert member.json()["status"] == "subscribed"
        fields = httpx.get(f"{base}/lists/{DEMO_LIST}/merge-fields", params={"count": 50}, auth=auth).json()
        assert [f["tag"] for f in fields["merge_fields"]] == [
            "FNAME",
            "LNAME",
            "ADDRESS",
            "PHONE",
            "BIRTHDAY",
            "COMPANY",
            "EXTRA",
        ]
