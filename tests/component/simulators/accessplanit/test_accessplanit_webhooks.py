"""Webhook registration and delivery, observed by a real HTTP receiver."""

from __future__ import annotations

import hashlib
import hmac
import threading
from typing import Any

import httpx
import pytest
from component.simulators.accessplanit.accessplanit_testkit import Delivery, Receiver, new_user, wait_for

SECRET = "s3cret-shared-with-tandem"


def register(api: httpx.Client, receiver: Receiver, **overrides: Any) -> dict[str, Any]:
    body = {
        "Module": "User",
        "Events": ["created", "updated", "deleted"],
        "TargetUrl": receiver.url,
        **overrides,
    }
    response = api.post("/Webhook", json=body)
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def signing(sim: httpx.Client) -> None:
    """Signing is an opt-in assumption of the simulator (accessplanit documents none)."""
    sim.post("/_sim/controls", json={"webhook_signing_enabled": True}).raise_for_status()


def verify_signature(delivery: Delivery, secret: str) -> bool:
    parts = dict(item.split("=", 1) for item in delivery.headers["X-Accessplanit-Signature"].split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + delivery.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


def instance(api: httpx.Client, instance_id: str) -> dict[str, Any]:
    return api.get(f"/WebhookInstance/{instance_id}").json()


def settled(api: httpx.Client, instance_id: str) -> dict[str, Any]:
    return wait_for(
        lambda: (doc := instance(api, instance_id))["Status"] in ("Succeeded", "Failed") and doc,
        f"webhook instance {instance_id} to settle",
    )


def test_registration_is_listed_and_deletable(api: httpx.Client, receiver: Receiver, signing: None) -> None:
    webhook = register(api, receiver, Secret=SECRET)
    assert webhook["HasSecret"] is True
    assert "Secret" not in webhook
    assert [w["ID"] for w in api.get("/Webhook").json()["results"]] == [webhook["ID"]]

    assert api.delete(f"/Webhook/{webhook['ID']}").status_code == 200
    assert api.get("/Webhook").json()["results"] == []
    assert api.delete(f"/Webhook/{webhook['ID']}").status_code == 404


def test_registration_is_validated(api: httpx.Client) -> None:
    response = api.post("/Webhook", json={"Module": "Course", "Events": ["renamed"], "TargetUrl": "ftp://x"})
    assert response.status_code == 400
    assert {e["field"] for e in response.json()["errors"]} == {"Module", "Events", "TargetUrl"}


def test_each_event_uses_its_method_and_carries_the_full_signed_record(
    api: httpx.Client, receiver: Receiver, signing: None
) -> None:
    webhook = register(api, receiver, Secret=SECRET)
    user = api.post("/User", json=new_user()).json()

    created = receiver.next()
    assert created.method == "POST"
    assert created.path == "/hooks/accessplanit?tenant=demo"
    assert created.headers["Content-Type"] == "application/json"
    assert verify_signature(created, SECRET)
    assert not verify_signature(created, "another-secret")
    body = created.json()
    assert body["Module"] == "User"
    assert body["Event"] == "created"
    assert body["WebhookID"] == webhook["ID"]
    assert body["WebhookInstanceID"]
    assert body["Timestamp"].endswith("Z")
    assert body["Data"] == user

    updated_user = api.put(f"/User/{user['ID']}", json={"Surname": "King"}).json()
    updated = receiver.next()
    assert (updated.method, updated.json()["Event"], updated.json()["Data"]) == ("PUT", "updated", updated_user)

    api.delete(f"/User/{user['ID']}")
    deleted = receiver.next()
    assert (deleted.method, deleted.json()["Event"]) == ("DELETE", "deleted")
    assert deleted.json()["Data"]["Status"] == "Deleted"
    assert verify_signature(deleted, SECRET)


def test_unsigned_when_the_webhook_has_no_secret(api: httpx.Client, receiver: Receiver, signing: None) -> None:
    register(api, receiver, Secret=None)
    api.post("/User", json=new_user())
    assert "X-Accessplanit-Signature" not in receiver.next().headers


def test_deliveries_are_unsigned_by_default_and_a_secret_is_refused(
    sim: httpx.Client, api: httpx.Client, receiver: Receiver
) -> None:
    assert sim.get("/_sim/controls").json()["webhook_signing_enabled"] is False
    refused = api.post(
        "/Webhook", json={"Module": "User", "Events": ["created"], "TargetUrl": receiver.url, "Secret": SECRET}
    )
    assert refused.status_code == 400
    assert refused.json()["errors"][0]["field"] == "Secret"
    assert register(api, receiver)["HasSecret"] is False
    api.post("/User", json=new_user())
    delivery = receiver.next()
    assert delivery.method == "POST"
    assert "X-Accessplanit-Signature" not in delivery.headers


def test_updates_can_be_delivered_as_patch(sim: httpx.Client, api: httpx.Client, receiver: Receiver) -> None:
    sim.post("/_sim/controls", json={"webhook_update_method": "PATCH"}).raise_for_status()
    register(api, receiver, Events=["updated"])
    user = api.post("/User", json=new_user()).json()
    updated_user = api.put(f"/User/{user['ID']}", json={"Surname": "King"}).json()
    updated = receiver.next()
    assert (updated.method, updated.json()["Event"], updated.json()["Data"]) == ("PATCH", "updated", updated_user)


def test_only_subscribed_events_are_delivered(api: httpx.Client, receiver: Receiver) -> None:
    register(api, receiver, Events=["updated"])
    user = api.post("/User", json=new_user()).json()
    api.put(f"/User/{user['ID']}", json={"Forenames": "Augusta"})
    delivery = receiver.next()
    assert delivery.json()["Event"] == "updated"
    instances = api.get("/WebhookInstance").json()["results"]
    assert [i["Event"] for i in instances] == ["updated"]


def test_a_failing_receiver_is_retried_until_it_succeeds(api: httpx.Client, receiver: Receiver) -> None:
    receiver.fail_first = 2
    register(api, receiver)
    api.post("/User", json=new_user())

    attempts = [receiver.next() for _ in range(3)]
    ids = {a.json()["WebhookInstanceID"] for a in attempts}
    assert len(ids) == 1
    final = settled(api, ids.pop())
    assert final["Status"] == "Succeeded"
    assert final["Attempts"] == 3
    assert final["LastStatusCode"] == 200


def test_gives_up_after_the_configured_retries(sim: httpx.Client, api: httpx.Client, receiver: Receiver) -> None:
    sim.post("/_sim/controls", json={"webhook_retry_delays": [0.01, 0.01]}).raise_for_status()
    receiver.fail_first = 100
    register(api, receiver)
    api.post("/User", json=new_user())

    instance_id = receiver.next().json()["WebhookInstanceID"]
    final = settled(api, instance_id)
    assert (final["Status"], final["Attempts"], final["LastStatusCode"]) == ("Failed", 3, 500)
    assert receiver.seen == 3


def test_failing_switch_sends_nothing(sim: httpx.Client, api: httpx.Client, receiver: Receiver) -> None:
    sim.post("/_sim/controls", json={"webhooks_failing": True, "webhook_retry_delays": [0.01]}).raise_for_status()
    register(api, receiver)
    api.post("/User", json=new_user())

    [planned] = api.get("/WebhookInstance").json()["results"]
    final = settled(api, planned["ID"])
    assert (final["Status"], final["Attempts"]) == ("Failed", 2)
    assert "webhooks_failing" in final["LastError"]
    assert receiver.seen == 0

    sim.post("/_sim/controls", json={"webhooks_failing": False}).raise_for_status()
    api.post("/User", json=new_user(Email="grace@example.com"))
    assert receiver.next().json()["Data"]["Email"] == "grace@example.com"


def test_the_api_answers_while_the_receiver_is_still_busy(api: httpx.Client, receiver: Receiver) -> None:
    receiver.hold = threading.Event()
    register(api, receiver)

    response = api.post("/User", json=new_user())  # would time out if delivery blocked the response
    assert response.status_code == 201
    in_flight = receiver.next()
    assert api.get(f"/WebhookInstance/{in_flight.json()['WebhookInstanceID']}").json()["Status"] == "Pending"

    receiver.hold.set()
    assert settled(api, in_flight.json()["WebhookInstanceID"])["Status"] == "Succeeded"


def test_ids_only_payload_mode(sim: httpx.Client, api: httpx.Client, receiver: Receiver) -> None:
    sim.post("/_sim/controls", json={"webhook_payload_mode": "ids"}).raise_for_status()
    register(api, receiver)
    user = api.post("/User", json=new_user()).json()
    assert receiver.next().json()["Data"] == {"ID": user["ID"]}


def test_hard_delete_carries_the_last_known_record(api: httpx.Client, receiver: Receiver) -> None:
    register(api, receiver, Events=["deleted"])
    user = api.post("/User", json=new_user()).json()
    api.delete(f"/User/{user['ID']}")
    soft = receiver.next().json()["Data"]
    api.delete(f"/User/{user['ID']}")
    hard = receiver.next()
    assert hard.method == "DELETE"
    assert hard.json()["Data"] == soft
