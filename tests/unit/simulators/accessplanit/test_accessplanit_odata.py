"""The $filter parser/evaluator and the other query options, without HTTP."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accessplanit_sim import odata
from accessplanit_sim.fields import USER_FIELDS, field_types
from accessplanit_sim.odata import (
    And,
    Call,
    Compare,
    Literal,
    Not,
    ODataError,
    Or,
    SortCache,
    apply_query,
    compile_filter,
    parse_filter,
    parse_orderby,
    sort_records,
)

TYPES = field_types(USER_FIELDS)
FOLD = frozenset({"Email"})

USERS: list[dict[str, Any]] = [
    {
        "ID": "100001",
        "Forenames": "Ada",
        "Surname": "Lovelace",
        "Email": "Ada@Example.com",
        "MarketingOptIn": True,
        "DOB": "1815-12-10T00:00:00",
        "DateUpdated": "2026-11-26T07:00:00.100Z",
        "Status": "Active",
    },
    {
        "ID": "100002",
        "Forenames": "Grace",
        "Surname": "Hopper",
        "Email": None,
        "MarketingOptIn": False,
        "DOB": "1906-12-09T00:00:00",
        "DateUpdated": "2026-11-26T07:00:00.200Z",
        "Status": "Active",
    },
    {
        "ID": "100003",
        "Forenames": "Alan",
        "Surname": "O'Turing",
        "Email": "alan@example.org",
        "MarketingOptIn": False,
        "DOB": None,
        "DateUpdated": "2026-11-26T07:00:00.300Z",
        "Status": "Deleted",
    },
]


def ids(text: str) -> list[str]:
    predicate = compile_filter(parse_filter(text), TYPES, FOLD)
    return [u["ID"] for u in USERS if predicate(u)]


def query(**params: str) -> dict[str, Any]:
    return apply_query(USERS, TYPES, params, top_default=100, top_max=1000, case_insensitive=FOLD)


# -- parsing --------------------------------------------------------------------------------------------------


def test_and_binds_tighter_than_or() -> None:
    tree = parse_filter("Surname eq 'a' or Surname eq 'b' and Forenames eq 'c'")
    assert tree == Or(
        Compare("Surname", "eq", Literal("string", "a")),
        And(Compare("Surname", "eq", Literal("string", "b")), Compare("Forenames", "eq", Literal("string", "c"))),
    )


def test_parentheses_override_precedence() -> None:
    tree = parse_filter("(Surname eq 'a' or Surname eq 'b') and not Forenames eq 'c'")
    assert tree == And(
        Or(Compare("Surname", "eq", Literal("string", "a")), Compare("Surname", "eq", Literal("string", "b"))),
        Not(Compare("Forenames", "eq", Literal("string", "c"))),
    )


def test_keywords_are_case_insensitive_and_literal_first_is_flipped() -> None:
    assert parse_filter("'b' LT Surname") == Compare("Surname", "gt", Literal("string", "b"))
    assert parse_filter("STARTSWITH(Email, 'x')") == Call("startswith", "Email", Literal("string", "x"))


def test_literals() -> None:
    assert parse_filter("ID eq 12").literal == Literal("number", 12)  # type: ignore[union-attr]
    assert parse_filter("ID eq -1.5").literal == Literal("number", -1.5)  # type: ignore[union-attr]
    assert parse_filter("MarketingOptIn eq true").literal == Literal("bool", True)  # type: ignore[union-attr]
    assert parse_filter("Email eq null").literal == Literal("null", None)  # type: ignore[union-attr]
    assert parse_filter("DOB eq 1990-03-28").literal == Literal("date", date(1990, 3, 28))  # type: ignore[union-attr]
    moment = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    assert parse_filter("DateUpdated gt 2026-01-02T03:04:05.678Z").literal == Literal("datetime", moment)  # type: ignore[union-attr]


@given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40))
def test_any_string_survives_quote_escaping(text: str) -> None:
    quoted = "'" + text.replace("'", "''") + "'"
    assert parse_filter(f"Surname eq {quoted}") == Compare("Surname", "eq", Literal("string", text))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("Surname eq 'Ada", "no closing quote"),
        ("Surname 'Ada'", "comparison operator"),
        ("Surname eq", "a value"),
        ("Surname eq 'a' and", "a value"),
        ("(Surname eq 'a'", "')'"),
        ("Surname eq 'a' Forenames eq 'b'", "'and', 'or'"),
        ("Surname like 'a'", "comparison operator"),
        ("contains(Surname 'a')", "','"),
        ("contains(Surname, 3)", "quoted string"),
        ("Surname eq 'a' # 1", "unexpected character '#'"),
        ("DateUpdated gt 2026-02-30", "not a valid date"),
        ("'a' eq 'b'", "a field name"),
    ],
)
def test_syntax_errors_say_what_is_wrong(text: str, fragment: str) -> None:
    with pytest.raises(ODataError) as error:
        parse_filter(text)
    assert fragment in str(error.value)
    assert error.value.option == "$filter"


# -- evaluation -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Surname eq 'Hopper'", ["100002"]),
        ("Surname eq 'hopper'", []),  # only Email folds case
        ("Surname ne 'Hopper'", ["100001", "100003"]),
        ("ID gt '100001'", ["100002", "100003"]),
        ("ID ge '100002'", ["100002", "100003"]),
        ("ID lt '100002'", ["100001"]),
        ("ID le '100002'", ["100001", "100002"]),
        ("ID eq 100003", ["100003"]),
        ("contains(Surname, 'o')", ["100001", "100002"]),
        ("startswith(Forenames, 'A')", ["100001", "100003"]),
        ("endswith(Surname, 'ing')", ["100003"]),
        ("Surname eq 'O''Turing'", ["100003"]),
        ("Email eq 'ADA@EXAMPLE.COM'", ["100001"]),
        ("contains(Email, 'EXAMPLE')", ["100001", "100003"]),
        ("endswith(Email, '.ORG')", ["100003"]),
        ("Email eq null", ["100002"]),
        ("Email ne null", ["100001", "100003"]),
        ("Email ne 'alan@example.org'", ["100001", "100002"]),
        ("MarketingOptIn eq true", ["100001"]),
        ("MarketingOptIn eq 'false'", ["100002", "100003"]),
        ("Status eq 'Active' and MarketingOptIn eq false", ["100002"]),
        ("Surname eq 'Hopper' or Surname eq 'Lovelace'", ["100001", "100002"]),
        ("not (Surname eq 'Hopper' or Surname eq 'Lovelace')", ["100003"]),
        ("(Status eq 'Deleted' or MarketingOptIn eq true) and startswith(Forenames, 'A')", ["100001", "100003"]),
        ("DateUpdated gt '2026-11-26T07:00:00.100Z'", ["100002", "100003"]),
        ("DateUpdated ge 2026-11-26T07:00:00.200Z", ["100002", "100003"]),
        ("DateUpdated lt '2026-11-26T08:00:00.150+01:00'", ["100001"]),  # 07:00:00.150 UTC
        ("DateUpdated gt '2026-11-26'", ["100001", "100002", "100003"]),
        ("DOB lt '1900-01-01'", ["100001"]),
        ("DOB ge 1900-01-01T00:00:00", ["100002"]),
        ("DOB eq null", ["100003"]),
    ],
)
def test_evaluation(text: str, expected: list[str]) -> None:
    assert ids(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("Nickname eq 'x'", "unknown field 'Nickname'"),
        ("CustomFields eq 'x'", "cannot be filtered"),
        ("MarketingOptIn eq 'maybe'", "not a valid bool"),
        ("DateUpdated gt 'yesterday'", "not a valid datetime"),
        ("DOB gt '1990-02-31'", "not a valid datetime"),
        ("contains(MarketingOptIn, 'x')", "needs a text field"),
        ("Email gt null", "null can only be compared"),
    ],
)
def test_type_errors_are_reported(text: str, fragment: str) -> None:
    with pytest.raises(ODataError) as error:
        compile_filter(parse_filter(text), TYPES, FOLD)
    assert fragment in str(error.value)


@given(
    st.sampled_from(["eq", "ne", "gt", "ge", "lt", "le"]),
    st.text(alphabet="abcAB'", max_size=4),
    st.lists(st.one_of(st.none(), st.text(alphabet="abcAB'", max_size=4)), max_size=6),
)
def test_comparisons_agree_with_python(op: str, literal: str, values: list[str | None]) -> None:
    records = [{"Surname": v} for v in values]
    quoted = "'" + literal.replace("'", "''") + "'"
    predicate = compile_filter(parse_filter(f"Surname {op} {quoted}"), TYPES, FOLD)
    python = {
        "eq": lambda v: v == literal,
        "ne": lambda v: v != literal,
        "gt": lambda v: v is not None and v > literal,
        "ge": lambda v: v is not None and v >= literal,
        "lt": lambda v: v is not None and v < literal,
        "le": lambda v: v is not None and v <= literal,
    }[op]
    assert [predicate(r) for r in records] == [python(v) for v in values]


# -- other options --------------------------------------------------------------------------------------------


def test_select_orderby_top_skip_count() -> None:
    body = query(
        **{"$orderby": "Status desc, Surname", "$top": "2", "$skip": "1", "$select": "ID,Surname", "$count": "true"}
    )
    assert body == {
        "results": [{"ID": "100002", "Surname": "Hopper"}, {"ID": "100001", "Surname": "Lovelace"}],
        "count": 3,
    }


def test_count_is_taken_after_filter_and_before_paging() -> None:
    body = query(**{"$filter": "Status eq 'Active'", "$top": "1", "$count": "true"})
    assert body["count"] == 2
    assert len(body["results"]) == 1
    assert "count" not in query()


def test_orderby_dates_compare_as_dates_with_nulls_first() -> None:
    assert [u["ID"] for u in query(**{"$orderby": "DOB"})["results"]] == ["100003", "100001", "100002"]
    assert [u["ID"] for u in query(**{"$orderby": "DOB desc"})["results"]] == ["100002", "100001", "100003"]


def test_top_defaults_and_maximum() -> None:
    many = [{"ID": str(i)} for i in range(150)]
    assert len(apply_query(many, TYPES, {}, top_default=100, top_max=1000)["results"]) == 100
    with pytest.raises(ODataError, match="maximum is 1000"):
        apply_query(many, TYPES, {"$top": "1001"}, top_default=100, top_max=1000)


@pytest.mark.parametrize(
    ("params", "option"),
    [
        ({"$top": "-2"}, "$top"),
        ({"$skip": "x"}, "$skip"),
        ({"$count": "yes"}, "$count"),
        ({"$select": "ID,Nope"}, "$select"),
        ({"$select": "ID,"}, "$select"),
        ({"$orderby": "Surname sideways"}, "$orderby"),
        ({"$orderby": "CustomFields"}, "$orderby"),
        ({"$expand": "Company"}, "$expand"),
    ],
)
def test_bad_options_name_the_option(params: dict[str, str], option: str) -> None:
    with pytest.raises(ODataError) as error:
        query(**params)
    assert error.value.option == option


def test_orderby_parses_several_keys() -> None:
    assert parse_orderby("Surname desc, Forenames asc,ID", TYPES) == [
        ("Surname", True),
        ("Forenames", False),
        ("ID", False),
    ]


def test_ids_compare_and_sort_as_numbers() -> None:
    records = [{"ID": "10"}, {"ID": "9"}, {"ID": "100"}]
    ordered = apply_query(records, TYPES, {"$orderby": "ID"}, top_default=100, top_max=1000)["results"]
    assert [r["ID"] for r in ordered] == ["9", "10", "100"]
    above = apply_query(records, TYPES, {"$filter": "ID gt '9'"}, top_default=100, top_max=1000)["results"]
    assert [r["ID"] for r in above] == ["10", "100"]
    with pytest.raises(ODataError, match="not a valid id"):
        compile_filter(parse_filter("ID eq 'abc'"), TYPES)
    assert ids("startswith(ID, '10000')") == ["100001", "100002", "100003"]


def test_top_minus_one_is_no_limit_capped_by_the_simulators_maximum() -> None:
    many = [{"ID": str(i)} for i in range(30)]
    body = apply_query(many, TYPES, {"$top": "-1"}, top_default=10, top_max=25, case_insensitive=FOLD)
    assert len(body["results"]) == 25


def test_a_sort_cache_pages_like_an_uncached_query_and_sorts_once_per_version(monkeypatch: pytest.MonkeyPatch) -> None:
    sorted_for: list[list[tuple[str, bool]]] = []

    def counted(records: Any, keys: list[tuple[str, bool]], types: Any) -> list[Any]:
        sorted_for.append(keys)
        return sort_records(records, keys, types)

    monkeypatch.setattr(odata, "sort_records", counted)
    cache = SortCache()
    query = {"$filter": "MarketingOptIn eq true", "$orderby": "Surname desc", "$top": "1", "$count": "true"}
    for skip in range(3):
        params = {**query, "$skip": str(skip)}
        cached = apply_query(USERS, TYPES, params, top_default=100, top_max=1000, sort=cache.sorter(1))
        assert cached == apply_query(USERS, TYPES, params, top_default=100, top_max=1000, sort=sort_records)
    assert sorted_for == [[("Surname", True)]]  # three pages, one sort

    sorted_for.clear()
    apply_query(USERS, TYPES, query, top_default=100, top_max=1000, sort=cache.sorter(2))
    assert sorted_for == [[("Surname", True)]]  # the records changed: sorted again


def test_a_page_is_made_of_copies() -> None:
    page = apply_query(USERS, TYPES, {"$top": "1"}, top_default=100, top_max=1000)["results"]
    page[0]["Surname"] = "Changed"
    assert USERS[0]["Surname"] == "Lovelace"
