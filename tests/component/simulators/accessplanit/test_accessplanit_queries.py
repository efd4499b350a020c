"""OData query options on GET /api/v2/User, as a poller would use them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from component.simulators.accessplanit.accessplanit_testkit import new_user


@pytest.fixture
def people(api: httpx.Client) -> list[dict[str, Any]]:
    rows = [
        new_user(Forenames="Ada", Surname="Lovelace", Email="Ada@Example.com", MarketingOptIn=True),
        new_user(Forenames="Grace", Surname="Hopper", Email=None, MainCompanyID="1", DOB="1906-12-09"),
        new_user(Forenames="Alan", Surname="O'Turing", Email="alan@example.org", DOB="1912-06-23T00:00:00"),
        new_user(Forenames="Katherine", Surname="Johnson", Email="kj@example.org", MarketingOptIn=True),
    ]
    return [api.post("/User", json=row).json() for row in rows]


def ids(api: httpx.Client, **params: str) -> list[str]:
    response = api.get("/User", params=params)
    assert response.status_code == 200, response.text
    return [u["ID"] for u in response.json()["results"]]


def test_each_comparison_operator(api: httpx.Client, people: list[dict[str, Any]]) -> None:
    ada, grace, alan, kath = (p["ID"] for p in people)
    assert ids(api, **{"$filter": "Surname eq 'Hopper'"}) == [grace]
    assert ids(api, **{"$filter": "Surname ne 'Hopper'"}) == [ada, alan, kath]
    assert ids(api, **{"$filter": f"ID gt '{grace}'"}) == [alan, kath]
    assert ids(api, **{"$filter": f"ID ge '{grace}'"}) == [grace, alan, kath]
    assert ids(api, **{"$filter": f"ID lt '{grace}'"}) == [ada]
    assert ids(api, **{"$filter": f"ID le {grace}"}) == [ada, grace]


def test_functions_and_quote_escaping(api: httpx.Client, people: list[dict[str, Any]]) -> None:
    ada, grace, alan, kath = (p["ID"] for p in people)
    assert ids(api, **{"$filter": "contains(Surname, 'o')"}) == [ada, grace, kath]
    assert ids(api, **{"$filter": "startswith(Forenames, 'A')"}) == [ada, alan]
    assert ids(api, **{"$filter": "endswith(Email, '.org')"}) == [alan, kath]
    assert ids(api, **{"$filter": "Surname eq 'O''Turing'"}) == [alan]


def test_and_or_parentheses(api: httpx.Client, people: list[dict[str, Any]]) -> None:
    ada, grace, alan, kath = (p["ID"] for p in people)
    assert ids(api, **{"$filter": "MarketingOptIn eq true and MainCompanyID eq '2'"}) == [ada, kath]
    assert ids(api, **{"$filter": "Surname eq 'Hopper' or Forenames eq 'Alan'"}) == [grace, alan]
    both = "(Surname eq 'Hopper' or Forenames eq 'Alan') and DOB lt '1910-01-01'"
    assert ids(api, **{"$filter": both}) == [grace]


def test_email_comparison_ignores_case(api: httpx.Client, people: list[dict[str, Any]]) -> None:
    assert ids(api, **{"$filter": "Email eq 'ada@EXAMPLE.com'"}) == [people[0]["ID"]]
    assert ids(api, **{"$filter": "Forenames eq 'ada'"}) == []


def test_date_updated_cursor(api: httpx.Client, people: list[dict[str, Any]]) -> None:
    cursor = people[1]["DateUpdated"]
    edited = api.put(f"/User/{people[0]['ID']}", json={"JobTitle": "Countess"}).json()
    params = {"$filter": f"DateUpdated gt '{cursor}'", "$orderby": "DateUpdated"}
    assert ids(api, **params) == [people[2]["ID"], people[3]["ID"], edited["ID"]]
    assert ids(api, **{"$filter": f"DateUpdated gt {edited['DateUpdated']}"}) == []


def test_select_orderby_top_skip_count(api: httpx.Client, people: list[dict[str, Any]]) -> None:
    params = {"$select": "ID,Surname", "$orderby": "MarketingOptIn desc, Surname asc", "$top": "2", "$skip": "1"}
    body = api.get("/User", params={**params, "$count": "true"}).json()
    assert body == {
        "results": [{"ID": people[0]["ID"], "Surname": "Lovelace"}, {"ID": people[1]["ID"], "Surname": "Hopper"}],
        "count": 4,
    }
    assert "count" not in api.get("/User").json()


def test_bad_filter_is_a_clear_400(api: httpx.Client, people: list[dict[str, Any]]) -> None:
    response = api.get("/User", params={"$filter": "Surname eq 'Hopper' and"})
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["field"] == "$filter"
    assert error["message"].startswith("Invalid $filter: expected a value")

    unknown = api.get("/User", params={"$filter": "Shoe eq 9"}).json()["errors"][0]["message"]
    assert unknown == "Invalid $filter: unknown field 'Shoe'."
    assert api.get("/User", params={"$top": "1001"}).status_code == 400
    assert api.get("/User", params={"$top": "-2"}).status_code == 400


def test_top_minus_one_means_no_limit(api: httpx.Client, people: list[dict[str, Any]]) -> None:
    assert len(api.get("/User", params={"$top": "-1"}).json()["results"]) == 4  # not the default of 100 either


def test_other_modules_accept_queries(api: httpx.Client) -> None:
    guests = api.get("/Company", params={"$filter": "IsGuest eq true"}).json()["results"]
    assert [c["Name"] for c in guests] == ["Guest Account"]
    names = api.get("/CustomFieldMetadata", params={"$select": "Name", "$filter": "Type eq 'List'"}).json()
    assert names == {"results": [{"Name": "Region"}]}
