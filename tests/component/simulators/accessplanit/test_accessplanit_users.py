"""The User module over HTTP: writes, validation, deletes, attribution and the audit log."""

from __future__ import annotations

import re

import httpx
from component.simulators.accessplanit.accessplanit_testkit import new_user

USER_FIELDS = [
    "ID",
    "UniqueID",
    "ExternalID",
    "Email",
    "HasEmail",
    "Title",
    "Forenames",
    "MiddleNames",
    "Surname",
    "Fullname",
    "Phone",
    "Mobile",
    "Address",
    "Town",
    "County",
    "Postcode",
    "Country",
    "JobTitle",
    "DOB",
    "MarketingOptIn",
    "SmsAuthorised",
    "ContactMethod",
    "MainCompanyID",
    "MainCompanyName",
    "UserCompaniesIDs",
    "Tags",
    "Status",
    "ActiveCoursesCount",
    "NotesCount",
    "DateCreated",
    "DateUpdated",
    "CreatedByID",
    "CreatedByName",
    "UpdatedByID",
    "UpdatedByName",
    "CustomFields",
]
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


def test_create_then_get_returns_the_documented_shape(api: httpx.Client) -> None:
    body = new_user(Phone="01234 567890", DOB="1990-03-28", MarketingOptIn=True, ExternalID="mc-1", Title=["Dr"])
    response = api.post("/User", json=body)
    assert response.status_code == 201
    user = response.json()
    assert list(user) == USER_FIELDS
    assert user["ID"].isdigit() and len(user["ID"]) <= 10
    assert re.fullmatch(r"[0-9a-f-]{36}", user["UniqueID"])
    assert user["MainCompanyName"] == "Acme Training Ltd"
    assert user["Status"] == "Active"
    assert (user["Phone"], user["DOB"], user["Title"], user["Country"]) == (
        "01234 567890",
        "1990-03-28T00:00:00",
        ["Dr"],
        [],
    )
    assert (user["Fullname"], user["HasEmail"], user["SmsAuthorised"]) == ("Ada Lovelace", True, False)
    assert user["CreatedByName"] == "Tandem Integration"
    assert TIMESTAMP.fullmatch(user["DateCreated"]) and user["DateUpdated"] == user["DateCreated"]
    assert (user["CreatedByID"], user["UpdatedByID"], user["UpdatedByName"]) == (
        "900001",
        "900001",
        "Tandem Integration",
    )
    assert user["CustomFields"] == {
        "Mailchimp Company": None,
        "Mailchimp Birthday": None,
        "Newsletter Since": None,
        "Courses Attended": None,
        "VIP": None,
        "Region": None,
    }
    assert api.get(f"/User/{user['ID']}").json() == user


def test_module_names_are_case_insensitive(api: httpx.Client) -> None:
    user = api.post("/user", json=new_user()).json()
    assert api.get(f"/USER/{user['ID']}").status_code == 200
    assert api.get("/company").status_code == 200


def test_a_user_without_email_is_accepted(api: httpx.Client) -> None:
    response = api.post("/User", json=new_user(Email=None))
    assert response.status_code == 201
    assert response.json()["Email"] is None


def test_validation_errors_name_field_and_message(api: httpx.Client) -> None:
    response = api.post("/User", json=new_user(Surname="S" * 41, Email="not-an-email", MainCompanyID="99"))
    assert response.status_code == 400
    assert response.json() == {
        "errors": [
            {"field": "Surname", "message": "'Surname' must be at most 40 characters (got 41)."},
            {"field": "Email", "message": "'not-an-email' is not a valid email address."},
            {"field": "MainCompanyID", "message": "Company '99' does not exist."},
        ]
    }
    assert api.get("/User").json()["results"] == []


def test_missing_mandatory_fields_and_bad_json(api: httpx.Client) -> None:
    response = api.post("/User", json={"Email": "a@b.co"})
    assert {e["field"] for e in response.json()["errors"]} == {"Forenames", "Surname", "MainCompanyID"}
    response = api.post("/User", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"] == "The request body is not valid JSON."


def test_partial_update_changes_only_the_given_fields(api: httpx.Client) -> None:
    user = api.post("/User", json=new_user(JobTitle="Analyst")).json()
    response = api.put(f"/User/{user['ID']}", json={"Surname": "King", "MainCompanyID": 1})
    assert response.status_code == 200
    updated = response.json()
    assert (updated["Surname"], updated["JobTitle"]) == ("King", "Analyst")
    assert (updated["MainCompanyID"], updated["MainCompanyName"]) == ("1", "Guest Account")
    assert updated["DateUpdated"] > user["DateUpdated"]
    assert updated["DateCreated"] == user["DateCreated"]
    assert api.put(f"/User/{user['ID']}", json={"Forenames": ""}).status_code == 400
    assert api.put("/User/999999", json={"Forenames": "X"}).status_code == 404


def test_date_updated_strictly_increases_with_every_write(api: httpx.Client) -> None:
    user = api.post("/User", json=new_user()).json()
    stamps = [user["DateUpdated"]]
    for n in range(20):
        stamps.append(api.put(f"/User/{user['ID']}", json={"JobTitle": f"v{n}"}).json()["DateUpdated"])
    stamps.append(api.post("/User", json=new_user()).json()["DateUpdated"])
    assert stamps == sorted(set(stamps))


def test_custom_fields_are_read_only_for_the_integration_but_not_for_a_human(
    sim: httpx.Client, api: httpx.Client, admin: httpx.Client
) -> None:
    user = api.post("/User", json=new_user()).json()
    refused = api.put(f"/User/{user['ID']}", json={"CustomFields": {"Mailchimp Company": "Acme"}})
    assert refused.status_code == 400
    assert refused.json()["errors"] == [
        {"field": "CustomFields/Mailchimp Company", "message": "Custom fields are read-only through the API."}
    ]

    edited = admin.put(f"/User/{user['ID']}", json={"CustomFields": {"Mailchimp Company": "Acme", "Region": "North"}})
    assert edited.json()["CustomFields"]["Mailchimp Company"] == "Acme"

    sim.post("/_sim/controls", json={"custom_fields_writable": True}).raise_for_status()
    written = api.put(f"/User/{user['ID']}", json={"CustomFields": {"VIP": True}}).json()["CustomFields"]
    assert (written["VIP"], written["Mailchimp Company"], written["Region"]) == (True, "Acme", "North")
    wrong_type = api.put(f"/User/{user['ID']}", json={"CustomFields": {"Courses Attended": "three"}})
    assert wrong_type.json()["errors"][0]["field"] == "CustomFields/Courses Attended"


def test_first_delete_marks_deleted_second_removes(api: httpx.Client) -> None:
    user = api.post("/User", json=new_user()).json()

    first = api.delete(f"/User/{user['ID']}")
    assert (first.status_code, first.content) == (200, b"")
    soft = api.get(f"/User/{user['ID']}").json()
    assert soft["Status"] == "Deleted"
    assert soft["DateUpdated"] > user["DateUpdated"]

    assert api.delete(f"/User/{user['ID']}").status_code == 200
    assert api.get(f"/User/{user['ID']}").status_code == 404
    assert api.delete(f"/User/{user['ID']}").status_code == 404


def test_several_users_may_share_an_email(api: httpx.Client) -> None:
    first = api.post("/User", json=new_user(Email="shared@example.com")).json()
    second = api.post("/User", json=new_user(Email="SHARED@example.com", Forenames="Bob")).json()
    assert first["ID"] != second["ID"]
    found = api.get("/User", params={"$filter": "Email eq 'shared@example.com'"}).json()["results"]
    assert [u["ID"] for u in found] == [first["ID"], second["ID"]]


def test_writes_are_attributed_and_audited(api: httpx.Client, admin: httpx.Client) -> None:
    user = api.post("/User", json=new_user()).json()
    edited = admin.put(f"/User/{user['ID']}", json={"Surname": "King", "Email": "ada@king.example"}).json()
    assert (edited["CreatedByID"], edited["UpdatedByID"], edited["UpdatedByName"]) == ("900001", "900002", "Demo Admin")
    api.delete(f"/User/{user['ID']}")

    log = api.get("/SystemEventLog", params={"$filter": f"ObjectID eq '{user['ID']}'"}).json()["results"]
    assert [(e["Action"], e["UserID"], e["UserName"]) for e in log] == [
        ("Created", "900001", "Tandem Integration"),
        ("Updated", "900002", "Demo Admin"),
        ("Deleted", "900001", "Tandem Integration"),
    ]
    assert log[1]["Changes"] == [  # in the User record's field order
        {"Field": "Email", "OldValue": "ada@example.com", "NewValue": "ada@king.example"},
        {"Field": "Surname", "OldValue": "Lovelace", "NewValue": "King"},
    ]
    assert log[1]["DateCreated"] == edited["DateUpdated"]
    assert log[2]["Changes"] == [{"Field": "Status", "OldValue": "Active", "NewValue": "Deleted"}]
    created_fields = {c["Field"] for c in log[0]["Changes"]}
    assert {"Forenames", "Surname", "Email", "MainCompanyID"} <= created_fields


def test_upsert_is_off_by_default(api: httpx.Client) -> None:
    response = api.post("/User", params={"upsert": "true"}, json=new_user())
    assert response.status_code == 400
    assert "not enabled" in response.json()["errors"][0]["message"]


def test_upsert_matches_on_id_then_email(sim: httpx.Client, api: httpx.Client) -> None:
    sim.post("/_sim/controls", json={"upsert_enabled": True}).raise_for_status()
    user = api.post("/User", json=new_user()).json()

    by_id = api.post("/User?upsert=true", json={"ID": user["ID"], "JobTitle": "Countess"})
    assert (by_id.status_code, by_id.json()["ID"], by_id.json()["JobTitle"]) == (200, user["ID"], "Countess")

    by_email = api.post("/User?upsert=true", json=new_user(Email="ADA@example.com", Surname="King"))
    assert (by_email.status_code, by_email.json()["ID"], by_email.json()["Surname"]) == (200, user["ID"], "King")

    inserted = api.post("/User?upsert=true", json=new_user(Email="new@example.com"))
    assert inserted.status_code == 201 and inserted.json()["ID"] != user["ID"]

    api.post("/User", json=new_user(Email="new@example.com"))
    ambiguous = api.post("/User?upsert=true", json=new_user(Email="new@example.com"))
    assert ambiguous.status_code == 409
    assert ambiguous.json()["errors"][0]["field"] == "Email"


def test_noop_update_still_counts_as_a_write(api: httpx.Client) -> None:
    user = api.post("/User", json=new_user()).json()
    again = api.put(f"/User/{user['ID']}", json={"Surname": user["Surname"]}).json()
    assert again["DateUpdated"] > user["DateUpdated"]
    log = api.get("/SystemEventLog", params={"$orderby": "ID desc", "$top": "1"}).json()["results"]
    assert (log[0]["Action"], log[0]["Changes"]) == ("Updated", [])


def test_hard_delete_mode_removes_at_once(sim: httpx.Client, api: httpx.Client) -> None:
    sim.post("/_sim/controls", json={"delete_mode": "hard"}).raise_for_status()
    user = api.post("/User", json=new_user()).json()
    assert api.delete(f"/User/{user['ID']}").status_code == 200
    assert api.get(f"/User/{user['ID']}").status_code == 404
    assert [e["Action"] for e in api.get("/SystemEventLog").json()["results"]] == ["Created", "Removed"]


def test_soft_delete_mode_never_removes(sim: httpx.Client, api: httpx.Client) -> None:
    sim.post("/_sim/controls", json={"delete_mode": "soft"}).raise_for_status()
    user = api.post("/User", json=new_user()).json()
    for _ in range(3):
        assert api.delete(f"/User/{user['ID']}").status_code == 200
    assert api.get(f"/User/{user['ID']}").json()["Status"] == "Deleted"


def test_derived_fields_are_returned_but_a_write_of_them_is_refused(api: httpx.Client) -> None:
    user = api.post("/User", json=new_user(Email=None)).json()
    assert (user["Fullname"], user["HasEmail"]) == ("Ada Lovelace", False)
    response = api.put(f"/User/{user['ID']}", json={"Fullname": "Ada King", "HasEmail": True})
    assert response.status_code == 400
    assert response.json() == {
        "errors": [
            {"field": "Fullname", "message": "'Fullname' is read-only and cannot be written."},
            {"field": "HasEmail", "message": "'HasEmail' is read-only and cannot be written."},
        ]
    }
    renamed = api.put(f"/User/{user['ID']}", json={"Surname": "King", "Email": "ada@example.com"}).json()
    assert (renamed["Fullname"], renamed["HasEmail"]) == ("Ada King", True)


def test_the_old_field_names_are_not_fields(api: httpx.Client) -> None:
    response = api.post("/User", json=new_user(Telephone="01234", DateOfBirth="28/03/1990"))
    assert response.status_code == 400
    assert {e["field"] for e in response.json()["errors"]} == {"Telephone", "DateOfBirth"}


def test_title_and_country_values_must_exist(api: httpx.Client) -> None:
    response = api.post("/User", json=new_user(Title=["Sir"], Country=["United Kingdom"]))
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["Title"]
