"""User write validation, without HTTP or storage."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accessplanit_sim.seed import CUSTOM_FIELDS
from accessplanit_sim.validation import WriteContext, is_email, parse_date, validate_user_write

CTX = WriteContext(
    companies={"1": "Guest Account", "2": "Acme"}, custom_fields=CUSTOM_FIELDS, custom_fields_writable=True
)
READ_ONLY_CUSTOM = WriteContext(companies=CTX.companies, custom_fields=CUSTOM_FIELDS, custom_fields_writable=False)


def valid(**overrides: Any) -> dict[str, Any]:
    return {"Forenames": "Ada", "Surname": "Lovelace", "MainCompanyID": "2", **overrides}


def errors(body: object, *, creating: bool = True, ctx: WriteContext = CTX) -> dict[str | None, str]:
    return {e.field: e.message for e in validate_user_write(body, ctx, creating=creating).errors}


def test_a_minimal_user_without_email_is_valid_and_gets_defaults() -> None:
    write = validate_user_write(valid(), CTX, creating=True)
    assert write.errors == []
    assert write.fields["Email"] is None
    assert write.fields["MarketingOptIn"] is False
    assert write.fields["Status"] == "Active"


def test_mandatory_fields_on_create() -> None:
    assert set(errors({})) == {"Forenames", "Surname", "MainCompanyID"}
    assert "mandatory" in errors(valid(Forenames="   "))["Forenames"]
    assert "mandatory" in errors(valid(Surname=None))["Surname"]


def test_mandatory_fields_are_optional_in_a_partial_update_but_not_blankable() -> None:
    assert errors({"Email": "a@b.co"}, creating=False) == {}
    assert "mandatory" in errors({"Surname": ""}, creating=False)["Surname"]


@pytest.mark.parametrize(("field", "limit"), [("Forenames", 50), ("Surname", 40), ("Email", 255)])
def test_length_limits(field: str, limit: int) -> None:
    value = "x" * (limit - 6) + "@ab.cd" if field == "Email" else "x" * limit
    assert errors(valid(**{field: value})) == {}
    too_long = "y" + value
    assert (
        errors(valid(**{field: too_long}))[field] == f"'{field}' must be at most {limit} characters (got {limit + 1})."
    )


def test_main_company_must_exist_and_is_normalised_to_a_string() -> None:
    assert validate_user_write(valid(MainCompanyID=1), CTX, creating=True).fields["MainCompanyID"] == "1"
    assert errors(valid(MainCompanyID="3"))["MainCompanyID"] == "Company '3' does not exist."
    assert "company ID" in errors(valid(MainCompanyID=True))["MainCompanyID"]


@pytest.mark.parametrize("email", ["plain", "a@b", "a b@c.de", "@c.de", "a@@c.de", "a@c..de"])
def test_bad_email_addresses(email: str) -> None:
    assert "not a valid email" in errors(valid(Email=email))["Email"]


@pytest.mark.parametrize("email", ["", None, "ada@example.com", "first.last+tag@sub.example.co.uk"])
def test_acceptable_email_values(email: str | None) -> None:
    assert errors(valid(Email=email)) == {}


def test_types_of_standard_fields() -> None:
    found = errors(valid(MarketingOptIn="yes", SmsAuthorised=1, Phone=123, DOB="28/03/1990", Status="Gone", Title="Dr"))
    assert set(found) == {"MarketingOptIn", "SmsAuthorised", "Phone", "DOB", "Status", "Title"}
    assert "ISO 8601" in found["DOB"]


def test_the_demo_clients_user_fields_are_written_and_normalised() -> None:
    body = valid(
        Phone="01632 960000",
        Mobile="07700 900000",
        MiddleNames="Augusta",
        Title=["Dr"],
        Address="1 St James's Square",
        Town="London",
        County="Greater London",
        Postcode="SW1Y 4JH",
        Country=["United Kingdom"],
        SmsAuthorised=True,
        ContactMethod=["Email", "SMS"],
        Tags="vip,alumni",
        DOB="1815-12-10",
    )
    write = validate_user_write(body, CTX, creating=True)
    assert write.errors == []
    assert write.fields["DOB"] == "1815-12-10T00:00:00"  # a date alone is midnight, no zone added
    assert write.fields["Title"] == ["Dr"]
    assert write.fields["Country"] == ["United Kingdom"]
    assert write.fields["Phone"] == "01632 960000"
    defaults = validate_user_write(valid(), CTX, creating=True).fields
    assert (defaults["Title"], defaults["Country"], defaults["ContactMethod"]) == ([], [], [])
    assert defaults["SmsAuthorised"] is False


def test_list_values_must_already_exist_in_the_platform() -> None:
    found = errors(valid(Title=["Sir"], Country=["Atlantis"], ContactMethod=["Pigeon"]))
    assert set(found) == {"Title", "Country", "ContactMethod"}
    assert "'Sir' not found in Title" in found["Title"]
    assert "must be a list of strings" in errors(valid(Country="United Kingdom"))["Country"]


def test_middle_names_follow_the_v1_limit() -> None:
    assert errors(valid(MiddleNames="x" * 250)) == {}
    assert "at most 250" in errors(valid(MiddleNames="x" * 251))["MiddleNames"]


def test_derived_fields_are_refused_by_default_and_ignored_with_the_switch() -> None:
    body = valid(Fullname="Ada Lovelace", HasEmail=True, NotesCount=3, CreatedByName="x")
    found = errors(body)
    assert found["Fullname"] == "'Fullname' is read-only and cannot be written."
    assert set(found) == {"Fullname", "HasEmail", "NotesCount", "CreatedByName"}
    lenient = WriteContext(CTX.companies, CUSTOM_FIELDS, True, ignore_read_only=True)
    write = validate_user_write(body, lenient, creating=True)
    assert write.errors == []
    assert "Fullname" not in write.fields


def test_read_only_and_unknown_fields_are_rejected() -> None:
    found = errors(valid(ID="5", DateUpdated="x", UpdatedByID="1", Nickname="Ada"))
    assert found["ID"] == "'ID' is read-only and cannot be written."
    assert found["DateUpdated"] == "'DateUpdated' is read-only and cannot be written."
    assert "UpdatedByID" in found
    assert "not a field" in found["Nickname"]


def test_body_must_be_an_object() -> None:
    assert errors(["Ada"]) == {None: "The request body must be a JSON object."}


def test_custom_fields_are_read_only_unless_allowed() -> None:
    assert errors(valid(CustomFields={"VIP": True}), ctx=READ_ONLY_CUSTOM) == {
        "CustomFields/VIP": "Custom fields are read-only through the API."
    }
    write = validate_user_write(valid(CustomFields={"VIP": True, "Region": None}), CTX, creating=True)
    assert write.custom_fields == {"VIP": True, "Region": None}


@pytest.mark.parametrize(
    ("name", "good", "bad"),
    [
        ("Mailchimp Company", "Acme", 5),
        ("Mailchimp Birthday", "03/28", "03/28/1990"),
        ("Newsletter Since", "2024-02-01", "01/02/2024"),
        ("Courses Attended", 3, 2.5),
        ("Courses Attended", 0, True),
        ("VIP", False, "false"),
        ("Region", "North", "north"),
    ],
)
def test_custom_field_values_are_checked_against_metadata(name: str, good: object, bad: object) -> None:
    assert errors(valid(CustomFields={name: good})) == {}
    assert f"CustomFields/{name}" in errors(valid(CustomFields={name: bad}))


def test_unknown_custom_field_and_non_object() -> None:
    assert "no User custom field" in errors(valid(CustomFields={"Shoe Size": 9}))["CustomFields/Shoe Size"]
    assert "object" in errors(valid(CustomFields=["VIP"]))["CustomFields"]


def test_every_problem_is_reported_at_once() -> None:
    assert len(errors({"Surname": "x" * 41, "Email": "nope", "MainCompanyID": "9"})) == 4  # + missing Forenames


@given(st.dates(min_value=date(1000, 1, 1)))
def test_iso_dates_are_stored_as_midnight_date_times(day: date) -> None:
    assert parse_date(day.isoformat()) == f"{day.isoformat()}T00:00:00"


@pytest.mark.parametrize(
    "text", ["1990-03-28T09:30:00", "1990-03-28T09:30:00.123", "1990-03-28T00:00:00Z", "1990-03-28T23:00:00+01:00"]
)
def test_date_times_are_stored_as_written(text: str) -> None:
    assert parse_date(text) == text  # no time-zone conversion


@pytest.mark.parametrize(
    "text", ["31/02/2020", "01/01/2020", "2020-02-30", "1/1/2020", "2020-13-01", "2020-01-01T25:00", ""]
)
def test_invalid_dates(text: str) -> None:
    assert parse_date(text) is None


def test_email_helper() -> None:
    assert is_email("a@b.co")
    assert not is_email("a@b")
