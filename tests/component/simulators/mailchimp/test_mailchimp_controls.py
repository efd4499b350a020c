"""Simulator-only controls: the per-account connection limit, injected latency and faults, stats, reset."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import httpx
import pytest
import requests
from component.simulators.mailchimp.mailchimp_testkit import (
    DEMO_KEY,
    DEMO_LIST,
    SECOND_KEY,
    SimServer,
    md5,
    sdk_client,
    wait_for,
)
from mailchimp_marketing.api_client import ApiClientError

MEMBER = {"email_address": "f@example.com", "status_if_new": "subscribed"}


def control(sim: httpx.Client, **body: Any) -> None:
    sim.post("/_sim/controls", json=body).raise_for_status()


async def _concurrent_gets(base_url: str, n: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=f"{base_url}/3.0", auth=("x", DEMO_KEY), timeout=30) as client:
        return list(await asyncio.gather(*(client.get("/lists") for _ in range(n))))


async def test_more_than_10_in_flight_requests_get_429(sim_server: SimServer, sim: httpx.Client) -> None:
    # The latency holds each request's slot, so all 15 overlap.
    control(sim, route="GET lists", latency_ms=1500)
    responses = await _concurrent_gets(sim_server.base_url, 15)
    assert Counter(r.status_code for r in responses) == {200: 10, 429: 5}
    throttled = next(r for r in responses if r.status_code == 429)
    assert throttled.json()["title"] == "TooManyRequests"
    stats = (await asyncio.to_thread(sim.get, "/_sim/stats")).json()
    assert stats["accounts"]["tandemdemo"]["peak_in_flight"] == 10
    assert (stats["responses_429"], stats["concurrency_rejections"]) == (5, 5)
    assert stats["requests"]["GET lists"] == {"200": 10, "429": 5}


async def test_the_limit_is_per_account(sim_server: SimServer, sim: httpx.Client, second: httpx.Client) -> None:
    control(sim, route="GET lists", latency_ms=1500)
    demo = asyncio.ensure_future(_concurrent_gets(sim_server.base_url, 10))
    await asyncio.to_thread(
        wait_for,
        lambda: sim.get("/_sim/stats").json()["accounts"].get("tandemdemo", {}).get("in_flight") == 10,
        "10 in flight",
    )
    other = await asyncio.to_thread(second.get, "/lists")
    assert other.status_code == 200
    assert Counter(r.status_code for r in await demo) == {200: 10}


def test_all_keys_of_one_account_share_its_slots(sim_server: SimServer, sim: httpx.Client) -> None:
    extra_key = "anotherdemokey00000000000000000-us1"
    sim.post("/_sim/accounts", json={"account_id": "tandemdemo", "api_keys": [extra_key]}).raise_for_status()
    assert sdk_client(sim_server.base_url, extra_key).lists.get_list(DEMO_LIST)["id"] == DEMO_LIST
    assert "tandemdemo" in sim.get("/_sim/stats").json()["accounts"]


@pytest.mark.parametrize(
    ("fault", "status", "title"),
    [("500", 500, "Internal Server Error"), ("503", 503, "Service Unavailable"), ("429", 429, "TooManyRequests")],
)
def test_json_faults_raise_api_client_error(sdk: Any, sim: httpx.Client, fault: str, status: int, title: str) -> None:
    control(sim, route="PUT member", fault=fault, count=1)
    with pytest.raises(ApiClientError) as raised:
        sdk.lists.set_list_member(DEMO_LIST, md5(MEMBER["email_address"]), MEMBER)
    assert raised.value.status_code == status
    assert json.loads(raised.value.text)["title"] == title
    # "next 1 request" only: the retry goes through.
    assert sdk.lists.set_list_member(DEMO_LIST, md5(MEMBER["email_address"]), MEMBER)["status"] == "subscribed"


@pytest.mark.parametrize(("fault", "status"), [("429_empty", 429), ("403_empty", 403)])
def test_bodiless_faults_come_back_as_a_plain_response(sdk: Any, sim: httpx.Client, fault: str, status: int) -> None:
    control(sim, route="PUT member", fault=fault, count=1)
    result = sdk.lists.set_list_member(DEMO_LIST, md5(MEMBER["email_address"]), MEMBER)
    assert isinstance(result, requests.Response)
    assert (result.status_code, result.content, result.headers.get("content-type")) == (status, b"", None)


def test_502_has_an_html_body(sdk: Any, sim: httpx.Client) -> None:
    control(sim, route="*", fault="502_html", count=1)
    with pytest.raises(ApiClientError) as raised:
        sdk.lists.get_list(DEMO_LIST)
    assert raised.value.status_code == 502
    assert raised.value.text.startswith("<html>")


def test_timeout_fault_outlasts_the_client(sim_server: SimServer, sim: httpx.Client) -> None:
    control(sim, route="GET list", fault="timeout", count=1, hang_ms=1500)
    client = sdk_client(sim_server.base_url, timeout=0.5)
    with pytest.raises(ApiClientError) as raised:
        client.lists.get_list(DEMO_LIST)
    assert raised.value.status_code is None
    assert isinstance(raised.value.text, requests.exceptions.Timeout)
    # The abandoned request still holds its slot until the server gives up on it.
    assert sim.get("/_sim/stats").json()["accounts"]["tandemdemo"]["in_flight"] == 1
    wait_for(lambda: sim.get("/_sim/stats").json()["accounts"]["tandemdemo"]["in_flight"] == 0, "the hang to end")


def test_probability_faults(sdk: Any, sim: httpx.Client) -> None:
    control(sim, route="GET list", fault="500", probability=1.0)
    for _ in range(3):
        with pytest.raises(ApiClientError):
            sdk.lists.get_list(DEMO_LIST)
    assert sim.delete("/_sim/controls").status_code == 204
    assert sdk.lists.get_list(DEMO_LIST)["id"] == DEMO_LIST


def test_faults_only_hit_their_route(sdk: Any, sim: httpx.Client) -> None:
    control(sim, route="PUT member", fault="500", probability=1.0)
    assert sdk.lists.get_list(DEMO_LIST)["id"] == DEMO_LIST
    with pytest.raises(ApiClientError):
        sdk.lists.set_list_member(DEMO_LIST, md5(MEMBER["email_address"]), MEMBER)


def test_controls_are_listed_and_reset_clears_them(sim: httpx.Client) -> None:
    control(sim, route="PUT member", latency_ms=150)
    control(sim, fault="503", count=2)
    listed = sim.get("/_sim/controls").json()
    assert listed["latency_ms"] == {"PUT member": 150}
    assert [(f["kind"], f["remaining"]) for f in listed["faults"]] == [("503", 2)]
    sim.post("/_sim/reset").raise_for_status()
    assert sim.get("/_sim/controls").json() == {"latency_ms": {}, "latency_per_member_ms": None, "faults": []}


def test_invalid_control_is_400(sim: httpx.Client) -> None:
    assert sim.post("/_sim/controls", json={"fault": "teapot"}).status_code == 400


def test_stats_count_routes_and_statuses(api: httpx.Client, sim: httpx.Client) -> None:
    api.put(
        f"/lists/{DEMO_LIST}/members/{md5('s@example.com')}",
        json={"email_address": "s@example.com", "status": "subscribed"},
    )
    api.get(f"/lists/{DEMO_LIST}/members/{md5('nobody@example.com')}")
    api.get(f"/lists/{DEMO_LIST}/members/{md5('s@example.com')}")
    requests_by_route = sim.get("/_sim/stats").json()["requests"]
    assert requests_by_route["PUT member"] == {"200": 1}
    assert requests_by_route["GET member"] == {"200": 1, "404": 1}


def test_trigger_error_header(api: httpx.Client) -> None:
    response = api.get("/lists", headers={"X-Trigger-Error": "APIKeyMissing"})
    assert (response.status_code, response.json()["title"]) == (401, "API Key Missing")


def test_unknown_route_and_wrong_method_are_problems(api: httpx.Client) -> None:
    missing = api.get("/nothing/here")
    assert (missing.status_code, missing.json()["title"]) == (404, "Resource Not Found")
    assert missing.headers["content-type"] == "application/problem+json; charset=utf-8"
    wrong = api.post(f"/lists/{DEMO_LIST}/members/{md5('a@example.com')}", json={})
    assert (wrong.status_code, wrong.json()["title"]) == (405, "Method Not Allowed")


def test_stats_name_accounts_not_keys(api: httpx.Client, sim: httpx.Client, second: httpx.Client) -> None:
    api.get("/lists")
    second.get("/lists")
    stats = sim.get("/_sim/stats").text
    assert "tandemdemo" in stats and "second" in stats
    assert DEMO_KEY not in stats and SECOND_KEY not in stats
