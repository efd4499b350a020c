"""Fault rules, the in-flight counter and the fields projection, without HTTP."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mailchimp_sim.app import route_name
from mailchimp_sim.controls import ControlRequest, Controls, Stats
from mailchimp_sim.views import project


def test_a_counted_fault_fires_for_the_next_n_matching_requests_only() -> None:
    controls = Controls()
    controls.add(ControlRequest(route="PUT member", fault="500", count=2))
    assert controls.take_fault("GET member") is None
    assert [controls.take_fault("PUT member") is not None for _ in range(3)] == [True, True, False]
    assert controls.snapshot()["faults"] == []


def test_probability_zero_never_fires_and_one_always_does() -> None:
    controls = Controls()
    controls.add(ControlRequest(fault="502_html", probability=0.0))
    assert all(controls.take_fault("PUT member") is None for _ in range(50))
    controls.clear()
    controls.add(ControlRequest(fault="502_html", probability=1.0))
    assert all(controls.take_fault("PUT member") is not None for _ in range(50))


def test_route_latency_overrides_the_wildcard_and_zero_removes_it() -> None:
    controls = Controls()
    controls.add(ControlRequest(latency_ms=100))
    controls.add(ControlRequest(route="PUT member", latency_ms=5))
    assert (controls.latency_ms("PUT member"), controls.latency_ms("GET member")) == (5, 100)
    controls.add(ControlRequest(route="PUT member", latency_ms=0))
    assert controls.latency_ms("PUT member") == 100


@pytest.mark.parametrize(
    "body", [{}, {"fault": "500", "count": 1, "probability": 0.5}, {"fault": "teapot"}, {"latency_ms": -1}]
)
def test_invalid_control_requests(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ControlRequest.model_validate(body)


def test_stats_refuse_an_eleventh_slot_and_remember_the_peak() -> None:
    stats = Stats(max_in_flight=10)
    assert all(stats.enter("acct") for _ in range(10))
    assert stats.enter("acct") is False
    assert stats.enter("other") is True
    stats.leave("acct")
    assert stats.enter("acct") is True
    account = stats.snapshot()["accounts"]["acct"]
    assert (account["in_flight"], account["peak_in_flight"], account["concurrency_rejections"]) == (10, 10, 1)


def test_stats_count_routes_and_429s() -> None:
    stats = Stats(max_in_flight=10)
    for status in (200, 200, 429):
        stats.record("PUT member", status)
    snapshot = stats.snapshot()
    assert snapshot["requests"] == {"PUT member": {"200": 2, "429": 1}}
    assert snapshot["responses_429"] == 1


def test_fields_and_exclude_fields_projection() -> None:
    doc = {"members": [{"id": "a", "email_address": "x", "merge_fields": {"FNAME": "A"}}], "total_items": 1}
    assert project(doc, "members.id,total_items", None) == {"members": [{"id": "a"}], "total_items": 1}
    assert project(doc, None, "members.merge_fields,total_items") == {"members": [{"id": "a", "email_address": "x"}]}
    assert project(doc, "members", None) == {"members": doc["members"]}


@pytest.mark.parametrize(
    ("method", "path", "name"),
    [
        ("PUT", "/3.0/lists/a1b2c3d4e5/members/0123456789abcdef0123456789abcdef", "PUT member"),
        ("POST", "/3.0/lists/a1b2c3d4e5", "POST batch subscribe"),
        ("GET", "/3.0/lists/a1b2c3d4e5", "GET list"),
        ("POST", "/3.0/lists/a1b2c3d4e5/members/x%40example.com/actions/delete-permanent", "POST delete permanent"),
        ("GET", "/3.0/lists", "GET lists"),
        ("DELETE", "/3.0/lists", "GET lists"),
        ("GET", "/3.0/nowhere", "unmatched"),
    ],
)
def test_route_names_are_known_before_routing(method: str, path: str, name: str) -> None:
    """Controls and stats are keyed by these names; a wrong method still names the path's route (a 405)."""
    assert route_name(method, path) == name
