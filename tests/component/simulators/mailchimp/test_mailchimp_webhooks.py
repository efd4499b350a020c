"""Outgoing audience webhooks: exact body shape, signing, event/source filters, async delivery, retries, 410."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from component.simulators.mailchimp.mailchimp_testkit import (
    DEMO_KEY,
    DEMO_LIST,
    Receiver,
    SimServer,
    fixture_keys,
    md5,
    running_receiver,
    sim_settings,
    verify_signature,
    wait_for,
)

ALL_EVENTS = {
    "subscribe": True,
    "unsubscribe": True,
    "profile": True,
    "cleaned": True,
    "upemail": True,
    "campaign": True,
}
ALL_SOURCES = {"user": True, "admin": True, "api": True}
FIRED_AT = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


def create_hook(api: httpx.Client, url: str, **overrides: Any) -> dict[str, Any]:
    body = {"url": url, "events": ALL_EVENTS, "sources": ALL_SOURCES, **overrides}
    response = api.post(f"/lists/{DEMO_LIST}/webhooks", json=body)
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()
    return created


def member_url(email: str) -> str:
    return f"/lists/{DEMO_LIST}/members/{md5(email)}"


def put(api: httpx.Client, email: str, **body: Any) -> dict[str, Any]:
    response = api.put(member_url(email), json={"email_address": email, **body})
    assert response.status_code == 200, response.text
    member: dict[str, Any] = response.json()
    return member


def only_fname_lname(api: httpx.Client) -> None:
    """Leaves the audience with the merge fields of Mailchimp's samples, so whole key lists can be compared."""
    for field in api.get(f"/lists/{DEMO_LIST}/merge-fields", params={"count": 100}).json()["merge_fields"]:
        if field["tag"] not in ("FNAME", "LNAME"):
            assert api.delete(f"/lists/{DEMO_LIST}/merge-fields/{field['merge_id']}").status_code == 204


def outcomes(sim: httpx.Client, webhook_id: str) -> list[tuple[int, str]]:
    attempts = sim.get("/_sim/webhook-deliveries", params={"webhook_id": webhook_id}).json()["attempts"]
    return [(a["attempt"], a["outcome"]) for a in attempts]


@pytest.fixture(scope="module")
def sample_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimServer]:
    """A simulator switched to the published samples' body shape (`WEBHOOK_BODY_SHAPE=sample`)."""
    settings = sim_settings(tmp_path_factory.mktemp("mailchimp-sim-sample"))
    with SimServer(settings.model_copy(update={"webhook_body_shape": "sample"})) as server:
        yield server


@pytest.fixture
def sample(sample_server: SimServer) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """(api, sim) clients of the sample-shape simulator, freshly reset."""
    with (
        httpx.Client(base_url=sample_server.base_url, timeout=10) as sim,
        httpx.Client(base_url=f"{sample_server.base_url}/3.0", auth=("x", DEMO_KEY), timeout=10) as api,
    ):
        sim.post("/_sim/reset").raise_for_status()
        yield api, sim


def test_every_event_has_exactly_the_sample_keys_in_order(
    sample: tuple[httpx.Client, httpx.Client], receiver: Receiver
) -> None:
    api, sim = sample
    only_fname_lname(api)
    hook = create_hook(api, receiver.url)

    created = put(api, "ev@example.com", status_if_new="subscribed", merge_fields={"FNAME": "Ev"}, ip_signup="10.0.0.1")
    subscribe = receiver.next()
    assert subscribe.keys() == fixture_keys("subscribe")
    assert subscribe.headers["Content-Type"] == "application/x-www-form-urlencoded"
    fields = subscribe.fields()
    assert fields["type"] == "subscribe"
    assert FIRED_AT.match(fields["fired_at"])
    assert (fields["data[id]"], fields["data[list_id]"], fields["data[email]"]) == (
        created["unique_email_id"],
        DEMO_LIST,
        "ev@example.com",
    )
    assert (fields["data[merges][FNAME]"], fields["data[ip_signup]"], fields["data[email_type]"]) == (
        "Ev",
        "10.0.0.1",
        "html",
    )

    api.patch(member_url("ev@example.com"), json={"merge_fields": {"LNAME": "Later"}})
    profile = receiver.next()
    assert profile.keys() == fixture_keys("profile")
    assert profile.fields()["data[merges][LNAME]"] == "Later"

    moved = api.patch(member_url("ev@example.com"), json={"email_address": "ev2@example.com"}).json()
    upemail = receiver.next()
    assert upemail.keys() == fixture_keys("upemail")
    assert (upemail.fields()["data[old_email]"], upemail.fields()["data[new_email]"]) == (
        "ev@example.com",
        "ev2@example.com",
    )
    assert upemail.fields()["data[new_id]"] == moved["unique_email_id"]

    api.patch(member_url("ev2@example.com"), json={"status": "unsubscribed"})
    unsubscribe = receiver.next()
    assert unsubscribe.keys() == fixture_keys("unsubscribe")
    assert (unsubscribe.fields()["data[action]"], unsubscribe.fields()["data[reason]"]) == ("unsub", "manual")

    api.delete(member_url("ev2@example.com"))
    deleted = receiver.next()
    assert deleted.keys() == fixture_keys("unsubscribe")
    assert deleted.fields()["data[action]"] == "delete"

    put(api, "bounce@example.com", status="subscribed")
    receiver.next()
    sim.post(f"/_sim/admin/lists/{DEMO_LIST}/members/{md5('bounce@example.com')}/clean").raise_for_status()
    cleaned = receiver.next()
    assert cleaned.keys() == fixture_keys("cleaned")
    assert (cleaned.fields()["data[reason]"], cleaned.fields()["data[email]"]) == ("hard", "bounce@example.com")

    sim.post(f"/_sim/admin/lists/{DEMO_LIST}/campaign-event", json={"subject": "Hello"}).raise_for_status()
    campaign = receiver.next()
    assert campaign.keys() == fixture_keys("campaign")
    assert campaign.fields()["data[subject]"] == "Hello"

    assert all(outcome == "delivered" for _, outcome in outcomes(sim, hook["id"]))


def test_default_audience_merges_sit_between_email_and_interests(
    sample: tuple[httpx.Client, httpx.Client], receiver: Receiver
) -> None:
    api, _ = sample
    create_hook(api, receiver.url)
    address = {"addr1": "1 Main St", "city": "Springfield", "state": "IL", "zip": "62701"}
    put(api, "m@example.com", status="subscribed", merge_fields={"ADDRESS": address, "BIRTHDAY": "01/22"})
    merges = [k for k in receiver.next().keys() if k.startswith("data[merges]")]
    parts = [f"data[merges][ADDRESS][{p}]" for p in ("addr1", "addr2", "city", "state", "zip", "country")]
    assert merges == [
        "data[merges][EMAIL]",
        "data[merges][FNAME]",
        "data[merges][LNAME]",
        *parts,
        "data[merges][PHONE]",
        "data[merges][BIRTHDAY]",
        "data[merges][COMPANY]",
        "data[merges][INTERESTS]",
    ]


def _sample_order(event_type: str) -> list[str]:
    """The samples' key order with `data[web_id]` after `data[id]`, as the recorded shape sends it."""
    keys = fixture_keys(event_type)
    return [k for key in keys for k in ([key, "data[web_id]"] if key == "data[id]" else [key])]


def test_recorded_bodies_carry_web_id_and_leave_out_empty_keys(api: httpx.Client, receiver: Receiver) -> None:
    # Captured real payloads (mailchimp-api.md §10) win over the published samples for what the simulator sends.
    only_fname_lname(api)
    create_hook(api, receiver.url)
    created = put(api, "rec@example.com", status_if_new="subscribed", merge_fields={"FNAME": "Rec"})
    subscribe = receiver.next()
    fields = subscribe.fields()
    assert fields["data[web_id]"] == str(created["web_id"])
    assert fields["data[id]"] == created["unique_email_id"]
    assert "" not in fields.values()
    for left_out in ("data[merges][LNAME]", "data[merges][INTERESTS]", "data[ip_signup]", "data[ip_opt]"):
        assert left_out not in fields
    order = _sample_order("subscribe")
    assert subscribe.keys() == [k for k in order if k in fields], "the samples' order, minus what is left out"

    api.patch(member_url("rec@example.com"), json={"status": "unsubscribed"})
    unsubscribe = receiver.next()
    assert "data[campaign_id]" not in unsubscribe.fields()
    assert unsubscribe.keys() == [k for k in _sample_order("unsubscribe") if k in unsubscribe.fields()]


def test_signed_deliveries_verify_with_the_creation_secret(api: httpx.Client, receiver: Receiver) -> None:
    secret = create_hook(api, receiver.url)["signing_secret"]
    put(api, "sig@example.com", status="subscribed")
    delivery = receiver.next()
    header = delivery.headers["X-Mailchimp-Signature"]
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", header)
    assert verify_signature(secret, header, delivery.body)
    assert not verify_signature(secret, header, delivery.body + b"&x=1")
    assert not verify_signature("wrong", header, delivery.body)


def test_unsigned_webhook(api: httpx.Client, receiver: Receiver) -> None:
    created = create_hook(api, receiver.url, signing_enabled=False)
    assert created["signing_enabled"] is False
    assert "signing_secret" not in created
    put(api, "plain@example.com", status="subscribed")
    assert "X-Mailchimp-Signature" not in receiver.next().headers


def test_the_signing_secret_is_only_in_the_create_response(sdk: Any, receiver: Receiver) -> None:
    # Mailchimp's docs (fern-marketing-api-docs, api-concepts/webhooks): the GET schema lists it, never filled.
    body = {"url": receiver.url, "events": ALL_EVENTS, "sources": ALL_SOURCES}
    created = sdk.lists.create_list_webhook(DEMO_LIST, body)
    assert created["signing_enabled"] is True and len(created["signing_secret"]) == 64
    assert "signing_secret" not in sdk.lists.get_list_webhook(DEMO_LIST, created["id"])
    listed = sdk.lists.get_list_webhooks(DEMO_LIST)["webhooks"]
    assert [("signing_secret" in hook, hook["signing_enabled"]) for hook in listed] == [(False, True)]
    patched = sdk.lists.update_list_webhook(DEMO_LIST, created["id"], {"events": {"campaign": False}})
    assert "signing_secret" not in patched


def test_a_legacy_webhook_switch_gives_unsigned_deliveries(tmp_path: Path, receiver: Receiver) -> None:
    # WEBHOOK_SIGNING=false: every new webhook behaves as one created before signing existed.
    settings = sim_settings(tmp_path).model_copy(update={"webhook_signing": False})
    with (
        SimServer(settings) as server,
        httpx.Client(base_url=f"{server.base_url}/3.0", auth=("x", DEMO_KEY), timeout=10) as api,
    ):
        created = create_hook(api, receiver.url)
        assert (created["signing_enabled"], "signing_secret" in created) == (False, False)
        put(api, "legacy@example.com", status="subscribed")
        assert "X-Mailchimp-Signature" not in receiver.next().headers


def test_sources_filter_api_writes_but_not_admin_edits(
    api: httpx.Client, sim: httpx.Client, receiver: Receiver
) -> None:
    create_hook(api, receiver.url, sources={"user": True, "admin": True, "api": False})
    put(api, "fromapi@example.com", status="subscribed")
    sim.put(
        f"/_sim/admin/lists/{DEMO_LIST}/members/fromui@example.com",
        json={"email_address": "fromui@example.com", "status": "subscribed"},
    ).raise_for_status()
    # Deliveries to one webhook go out in event order, so the API write would have arrived first.
    assert receiver.next().fields()["data[email]"] == "fromui@example.com"
    assert receiver.post_count == 1


def test_user_source_unsubscribe_with_abuse_reason(api: httpx.Client, sim: httpx.Client, receiver: Receiver) -> None:
    put(api, "spam@example.com", status="subscribed")
    create_hook(api, receiver.url, sources={"user": True, "admin": False, "api": False})
    url = f"/_sim/admin/lists/{DEMO_LIST}/members/spam@example.com/unsubscribe"
    sim.post(url, json={"source": "admin"}).raise_for_status()
    put(api, "spam2@example.com", status="subscribed")
    sim.post(
        f"/_sim/admin/lists/{DEMO_LIST}/members/spam2@example.com/unsubscribe",
        json={"source": "user", "reason": "abuse"},
    )
    fields = receiver.next().fields()
    assert (fields["data[email]"], fields["data[action]"], fields["data[reason]"]) == (
        "spam2@example.com",
        "unsub",
        "abuse",
    )


def test_events_filter(api: httpx.Client, receiver: Receiver) -> None:
    create_hook(api, receiver.url, events={"subscribe": True})
    put(api, "e1@example.com", status="subscribed")
    assert receiver.next().fields()["type"] == "subscribe"
    put(api, "e1@example.com", merge_fields={"FNAME": "Changed"})
    put(api, "e2@example.com", status="subscribed")
    second = receiver.next().fields()
    assert (second["type"], second["data[email]"]) == ("subscribe", "e2@example.com")


def test_pending_member_fires_subscribe_only_when_confirmed(api: httpx.Client, receiver: Receiver) -> None:
    create_hook(api, receiver.url, events={"subscribe": True})
    put(api, "p@example.com", status_if_new="pending")
    put(api, "p@example.com", status="subscribed")
    fields = receiver.next().fields()
    assert (fields["type"], fields["data[email]"]) == ("subscribe", "p@example.com")
    assert receiver.post_count == 1


def test_delivery_does_not_block_the_api_response(api: httpx.Client, receiver: Receiver) -> None:
    create_hook(api, receiver.url)
    receiver.hold = threading.Event()
    try:
        # The receiver answers nothing until released; a synchronous delivery would time this request out.
        response = api.put(
            member_url("fast@example.com"),
            json={"email_address": "fast@example.com", "status": "subscribed"},
            timeout=3,
        )
        assert response.status_code == 200
        assert receiver.arrived.wait(15)
    finally:
        receiver.hold.set()
    assert receiver.next().fields()["data[email]"] == "fast@example.com"


def test_failed_deliveries_are_retried_then_succeed(api: httpx.Client, sim: httpx.Client, receiver: Receiver) -> None:
    hook = create_hook(api, receiver.url)
    receiver.script = [500, 503]
    put(api, "retry@example.com", status="subscribed")
    bodies = [receiver.next().body for _ in range(3)]
    assert len(set(bodies)) == 1
    expected = [(1, "retrying"), (2, "retrying"), (3, "delivered")]
    wait_for(lambda: outcomes(sim, hook["id"]) == expected, "the third attempt to be logged")


def test_retries_stop_after_the_schedule(api: httpx.Client, sim: httpx.Client, receiver: Receiver) -> None:
    hook = create_hook(api, receiver.url)
    receiver.script = [500] * 10
    put(api, "never@example.com", status="subscribed")
    expected = [(1, "retrying"), (2, "retrying"), (3, "retrying"), (4, "failed")]
    wait_for(lambda: outcomes(sim, hook["id"]) == expected, "the schedule to run out")
    assert receiver.post_count == 4


def test_410_disables_the_webhook_until_it_is_edited(api: httpx.Client, sim: httpx.Client, receiver: Receiver) -> None:
    with running_receiver() as control:
        gone = create_hook(api, receiver.url)
        create_hook(api, control.url)
        receiver.script = [410]
        put(api, "g1@example.com", status="subscribed")
        assert receiver.next().fields()["data[email]"] == "g1@example.com"
        control.next()
        wait_for(lambda: outcomes(sim, gone["id"]) == [(1, "disabled")], "the 410 to be logged")

        put(api, "g2@example.com", status="subscribed")
        assert control.next().fields()["data[email]"] == "g2@example.com"
        assert receiver.post_count == 1

        api.patch(f"/lists/{DEMO_LIST}/webhooks/{gone['id']}", json={"events": {"profile": True}}).raise_for_status()
        put(api, "g3@example.com", status="subscribed")
        assert receiver.next().fields()["data[email]"] == "g3@example.com"


def test_unreachable_url_fails_verification(api: httpx.Client) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    response = api.post(f"/lists/{DEMO_LIST}/webhooks", json={"url": f"http://127.0.0.1:{port}/hook"})
    assert response.status_code == 400
    assert response.json()["detail"].endswith("HTTP Code: 0")


@pytest.mark.parametrize("url", ["not a url", "ftp://example.com/hook"])
def test_invalid_url_is_rejected(api: httpx.Client, url: str) -> None:
    response = api.post(f"/lists/{DEMO_LIST}/webhooks", json={"url": url})
    assert (response.status_code, response.json()["errors"][0]["field"]) == (400, "url")


def test_same_url_twice_is_rejected(api: httpx.Client, receiver: Receiver) -> None:
    create_hook(api, receiver.url)
    assert api.post(f"/lists/{DEMO_LIST}/webhooks", json={"url": receiver.url}).status_code == 400


def test_webhook_get_patch_delete(api: httpx.Client, receiver: Receiver) -> None:
    hook = create_hook(api, receiver.url)
    url = f"/lists/{DEMO_LIST}/webhooks/{hook['id']}"
    patched = api.patch(url, json={"sources": {"api": False}}).json()
    assert patched["sources"] == {"user": True, "admin": True, "api": False}
    assert api.get(url).json()["sources"]["api"] is False
    assert api.delete(url).status_code == 204
    assert api.get(url).status_code == 404
    assert api.get(f"/lists/{DEMO_LIST}/webhooks").json()["total_items"] == 0
