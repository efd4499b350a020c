from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tandem_ingest.domain.errors import InvalidPayload
from tandem_ingest.domain.normalize.accessplanit import normalize_webhook
from tandem_shared.contracts import ChangeKind, System, Trigger

NOW = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)


def user(**overrides: object) -> dict[str, object]:
    return {
        "ID": "1001",
        "Forenames": "Ada",
        "Surname": "Lovelace",
        "Email": " Ada@Example.com ",
        "DateUpdated": "2026-11-26T06:59:58.123Z",
        "UpdatedByID": "900002",
        **overrides,
    }


def normalize(method: str = "POST", body: object | None = None):
    return normalize_webhook(
        instance_id="demo",
        method=method,
        body={"Module": "User", "Event": "created", "Data": user()} if body is None else body,
        execution_id="exec-1",
        received_at=NOW,
    )


@pytest.mark.parametrize(
    ("method", "kind"),
    [
        ("POST", ChangeKind.CREATED),
        ("PUT", ChangeKind.UPDATED),
        ("PATCH", ChangeKind.UPDATED),
        ("DELETE", ChangeKind.DELETED),
    ],
)
def test_the_http_method_carries_the_kind_of_change(method: str, kind: ChangeKind) -> None:
    assert normalize(method).kind is kind


def test_a_user_webhook_becomes_a_change_event_with_identity_and_timestamps() -> None:
    event = normalize()
    assert event.source is System.ACCESSPLANIT
    assert event.trigger is Trigger.WEBHOOK
    assert event.identity.accessplanit_user_id == "1001"
    assert event.identity.email == "Ada@Example.com"
    assert event.occurred_at == datetime(2026, 11, 26, 6, 59, 58, 123000, tzinfo=UTC)
    assert event.received_at == NOW
    assert event.updated_by_id == "900002"
    assert event.fields["Surname"] == "Lovelace"


def test_redelivery_of_the_same_change_has_the_same_event_id_and_a_new_change_does_not() -> None:
    first, again = normalize(), normalize("PUT")
    later = normalize(body={"Module": "User", "Data": user(DateUpdated="2026-11-26T07:00:01.000Z")})
    assert first.event_id == again.event_id
    assert later.event_id != first.event_id


def test_contact_key_follows_the_accessplanit_user_so_email_changes_stay_in_order() -> None:
    assert normalize().identity.contact_key == "ap:1001"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([1, 2], "JSON object"),
        ({"Module": "User"}, "Data must be"),
        ({"Module": "Course", "Data": user()}, "only User"),
        ({"Data": user(ID=None)}, "Data.ID is missing"),
        ({"Data": user(DateUpdated="yesterday")}, "not an ISO 8601"),
        ({"Data": user(DateUpdated="2026-11-26T06:59:58")}, "no time zone"),
        ({"Data": user(Email=42)}, "Email must be a string"),
    ],
)
def test_bad_bodies_are_refused_with_a_clear_message(body: object, message: str) -> None:
    with pytest.raises(InvalidPayload, match=message):
        normalize(body=body)


def test_unknown_methods_are_refused() -> None:
    with pytest.raises(InvalidPayload, match="not an accessplanit webhook method"):
        normalize("GET")
