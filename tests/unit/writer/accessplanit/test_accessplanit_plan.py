from __future__ import annotations

from typing import Any

from tandem_shared.contracts import ErrorInfo
from tandem_shared.vendors.accessplanit.bodies import changed_fields, create_body, desired_fields
from tandem_writer.domain.accessplanit_plan import DELETED, choose_user, moved_away


def user(user_id: str, updated: str, **fields: Any) -> dict[str, Any]:
    return {"ID": user_id, "DateUpdated": updated, "Status": "Active", "Email": "ada@example.com", **fields}


def test_only_writable_fields_are_sent_and_the_rest_is_reported() -> None:
    desired = desired_fields(
        {"Forenames": "Ada", "Surname": "L", "ID": "7", "MainCompanyID": "2", "Status": "Deleted", "Phone": "1"}
    )
    assert desired.fields == {"Forenames": "Ada", "Surname": "L", "Phone": "1"}
    assert desired.ignored == ("ID", "MainCompanyID", "Status")


def test_several_users_with_one_address_the_most_recently_updated_active_one_wins() -> None:
    match = choose_user(
        [
            user("100001", "2026-11-26T07:00:00.100Z"),
            user("100003", "2026-11-26T07:00:00.300Z"),
            user("100004", "2026-11-26T07:00:00.900Z", Status="Deleted"),
            user("100002", "2026-11-26T07:00:00.200Z"),
        ]
    )
    assert match.user is not None and match.user["ID"] == "100003"
    assert match.others == ("100002", "100001")
    assert match.ambiguous
    assert match.deleted == ("100004",)


def test_a_single_user_is_not_ambiguous_and_none_is_none() -> None:
    assert not choose_user([user("1", "2026-11-26T07:00:00.000Z")]).ambiguous
    assert choose_user([]).user is None


def test_only_deleted_users_are_never_chosen_but_reported() -> None:
    match = choose_user([user("9", "2026-11-26T07:00:00.000Z", Status="Deleted")])
    assert match.user is None
    assert match.deleted == ("9",)


def test_an_update_sends_only_what_differs() -> None:
    current = user(
        "1",
        "x",
        Forenames="Ada",
        Surname="Lovelace",
        Phone=None,
        CustomFields={"Region": "North", "VIP": None},
    )
    wanted = {
        "Forenames": "Ada",
        "Surname": "King",
        "Email": "ADA@example.com",
        "Phone": "",
        "CustomFields": {"Region": "North", "VIP": True},
    }
    assert changed_fields(current, wanted) == {"Surname": "King", "CustomFields": {"VIP": True}}


def test_nothing_to_change_is_an_empty_update() -> None:
    assert changed_fields(user("1", "x", Forenames="Ada"), {"Forenames": "Ada", "Email": "ada@example.com"}) == {}


def test_a_new_user_joins_the_default_account_with_its_mandatory_names() -> None:
    body = create_body(
        {"Forenames": "Ada", "Surname": "Lovelace", "Phone": None, "CustomFields": {"VIP": None}},
        email="ada@example.com",
        default_account_id="1",
    )
    assert body == {"Forenames": "Ada", "Surname": "Lovelace", "Email": "ada@example.com", "MainCompanyID": "1"}


def test_a_missing_surname_is_a_permanent_failure_naming_the_field() -> None:
    error = create_body({"Forenames": "Ada", "Surname": "  "}, email="ada@example.com", default_account_id="1")
    assert isinstance(error, ErrorInfo)
    assert error.permanent
    assert error.field == "Surname"
    assert error.message == (
        "Cannot create an accessplanit user for ada@example.com: Surname is mandatory in accessplanit and the "
        "contact has no value for it"
    )


def test_both_names_missing_are_both_named() -> None:
    error = create_body({}, email="x@example.com", default_account_id="1")
    assert isinstance(error, ErrorInfo)
    assert error.field == "Forenames"
    assert "Forenames and Surname are mandatory" in error.message


def test_without_a_default_account_nothing_is_created() -> None:
    error = create_body({"Forenames": "A", "Surname": "B"}, email="x@example.com", default_account_id=None)
    assert isinstance(error, ErrorInfo) and error.permanent
    assert error.field == "MainCompanyID"
    assert "default account" in error.message


def test_a_user_moved_away_from_an_address_is_active_and_holds_another_one() -> None:
    assert moved_away({"ID": "7", "Email": "ada.king@example.com"}, "ada@example.com")
    assert not moved_away({"ID": "7", "Email": "Ada@Example.com "}, "ada@example.com")  # the same address
    assert not moved_away({"ID": "7", "Email": "ada.king@example.com", "Status": DELETED}, "ada@example.com")
    assert not moved_away({"ID": "7", "Email": ""}, "ada@example.com")
    assert not moved_away(None, "ada@example.com")
