from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tandem_ingest.domain.errors import InvalidPayload
from tandem_ingest.domain.normalize.accessplanit import (
    parse_webhook,
    record_kind,
    removed_user_event,
    user_event,
    webhook_event,
)
from tandem_shared.contracts import ChangeKind, Trigger

NOW = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)


def user(**overrides: Any) -> dict[str, Any]:
    return {
        "ID": "100001",
        "Forenames": "Ada",
        "Surname": "Lovelace",
        "Email": "ada@example.com",
        "Status": "Active",
        "DateCreated": "2026-11-26T06:59:00.000Z",
        "DateUpdated": "2026-11-26T06:59:58.123Z",
        "UpdatedByID": "900002",
        **overrides,
    }


def by_webhook(method: str, data: dict[str, Any]):
    delivery = parse_webhook(method=method, body={"Module": "User", "Event": "x", "Data": data})
    assert delivery.record is not None
    return webhook_event(delivery, delivery.record, instance_id="i", execution_id="e", received_at=NOW)


def by_poll(data: dict[str, Any]):
    return user_event(
        instance_id="i",
        kind=record_kind(data),
        user=data,
        trigger=Trigger.POLL,
        execution_id="p",
        received_at=NOW,
        source_action="poll",
    )


@pytest.mark.parametrize(
    ("method", "record"),
    [
        ("POST", user(DateUpdated="2026-11-26T06:59:00.000Z")),
        ("PUT", user()),
        ("DELETE", user(Status="Deleted")),
    ],
)
def test_webhook_and_poller_give_the_same_change_the_same_event_id(method: str, record: dict[str, Any]) -> None:
    webhook, poll = by_webhook(method, record), by_poll(record)
    assert webhook.event_id == poll.event_id
    assert webhook.kind is poll.kind
    assert (webhook.trigger, poll.trigger) == (Trigger.WEBHOOK, Trigger.POLL)


def test_a_hard_delete_carrying_the_last_state_is_not_mistaken_for_that_last_update() -> None:
    assert by_webhook("DELETE", user()).event_id != by_webhook("PUT", user()).event_id
    assert by_webhook("DELETE", user()).kind is ChangeKind.DELETED


def test_a_record_marked_deleted_is_a_deletion_whatever_the_method() -> None:
    assert by_webhook("PUT", user(Status="Deleted")).kind is ChangeKind.DELETED


@pytest.mark.parametrize(
    ("record", "kind"),
    [
        (user(DateUpdated="2026-11-26T06:59:00.000Z"), ChangeKind.CREATED),
        (user(), ChangeKind.UPDATED),
        (user(Status="Deleted"), ChangeKind.DELETED),
    ],
)
def test_a_polled_record_says_what_happened_last(record: dict[str, Any], kind: ChangeKind) -> None:
    assert record_kind(record) is kind


def test_an_ids_only_delivery_names_the_user_and_carries_no_record() -> None:
    delivery = parse_webhook(
        method="PUT",
        body={"Module": "User", "Event": "updated", "Timestamp": "2026-11-26T07:00:00.500Z", "Data": {"ID": "7"}},
    )
    assert delivery.user_id == "7"
    assert delivery.record is None
    assert delivery.kind is ChangeKind.UPDATED
    assert delivery.action == "PUT updated"
    assert delivery.timestamp == datetime(2026, 11, 26, 7, 0, 0, 500000, tzinfo=UTC)


def test_a_removed_user_is_one_deletion_however_often_it_is_reported() -> None:
    def removed(execution_id: str, at: datetime):
        return removed_user_event(
            instance_id="i",
            user_id="7",
            occurred_at=at,
            trigger=Trigger.WEBHOOK,
            execution_id=execution_id,
            received_at=NOW,
            source_action="DELETE deleted",
        )

    first, again = removed("a", NOW), removed("b", datetime(2026, 11, 27, tzinfo=UTC))
    assert first.event_id == again.event_id
    assert first.kind is ChangeKind.DELETED
    assert first.identity.contact_key == "ap:7"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"ID": "../Webhook"}, "not an accessplanit ID"),
        ({"ID": True}, "Data.ID is missing"),
        ({"ID": ["1"]}, "Data.ID is missing"),
        ({"ID": "x" * 65}, "not an accessplanit ID"),
    ],
)
def test_ids_that_accessplanit_never_issues_are_refused(data: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidPayload, match=message):
        parse_webhook(method="PUT", body={"Data": data})


def test_a_record_read_for_another_user_is_refused() -> None:
    delivery = parse_webhook(method="PUT", body={"Data": {"ID": "7"}})
    with pytest.raises(InvalidPayload, match="not user '7'"):
        webhook_event(delivery, user(ID="8"), instance_id="i", execution_id="e", received_at=NOW)


def test_updated_by_must_be_an_id() -> None:
    with pytest.raises(InvalidPayload, match="UpdatedByID"):
        by_poll(user(UpdatedByID={"a": 1}))
