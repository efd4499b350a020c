"""Coalescing a contact's queued upserts into one write: nothing a skipped command carried may be lost."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from support.commands import sync_command
from tandem_shared.contracts import Operation, SyncCommand, System, fingerprint
from tandem_writer.domain.coalescing import Queued, coalesce, fold_payloads

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def command(
    n: int, merge_fields: dict[str, Any], *, user: str = "1", operation: Operation = Operation.UPSERT
) -> SyncCommand:
    payload = {"email_address": f"u{user}@example.com", "status_if_new": "subscribed", "merge_fields": merge_fields}
    return sync_command(
        "demo",
        System.MAILCHIMP,
        payload,
        email=f"u{user}@example.com",
        user_id=user,
        operation=operation,
        name=f"c{n}",
        execution_id=f"e{n}",
        event_id=f"ev{n}",
        key=f"k{n}",
        occurred=T0 + timedelta(seconds=n),
    )


def queued(offset: int, cmd: SyncCommand | None, key: bytes | None = None) -> Queued:
    if key is None and cmd is not None:
        key = f"demo:{cmd.identity.contact_key}".encode()
    return Queued(offset, key, cmd)


def test_later_values_win_and_fields_only_an_earlier_command_carried_are_kept() -> None:
    head = queued(10, command(1, {"FNAME": "Ada", "LNAME": "Byron"}))
    behind = [
        queued(11, command(2, {"FNAME": "Ad"}, user="2")),  # another contact, left alone
        queued(12, command(3, {"LNAME": "Lovelace"})),
        queued(13, command(4, {"FNAME": "Augusta"})),
    ]
    result = coalesce(head, behind)
    assert result is not None
    assert [q.offset for q in result.absorbed] == [12, 13]
    assert result.command.payload["merge_fields"] == {"FNAME": "Augusta", "LNAME": "Lovelace"}
    assert result.command.execution_id == "e4"  # the newest command is the one written
    assert result.command.source_occurred_at == T0 + timedelta(seconds=4)
    assert result.command.fingerprint == fingerprint(result.command.payload)
    assert result.command.idempotency_key == "k4"  # applied, the newest change is recorded as done


def test_nothing_to_fold_without_a_later_upsert_for_the_contact() -> None:
    assert coalesce(queued(1, command(1, {"FNAME": "A"})), [queued(2, command(2, {"FNAME": "B"}, user="2"))]) is None
    assert coalesce(queued(1, command(1, {"FNAME": "A"})), []) is None


def test_an_email_change_is_a_barrier_and_never_folds() -> None:
    head = queued(1, command(1, {"FNAME": "A"}))
    change = queued(2, command(2, {}, operation=Operation.CHANGE_EMAIL))
    after = queued(3, command(3, {"FNAME": "C"}))
    assert coalesce(head, [change, after]) is None
    assert coalesce(change, [after]) is None


def test_an_unreadable_record_for_the_contact_stops_the_fold() -> None:
    head = queued(1, command(1, {"FNAME": "A"}))
    later = queued(3, command(3, {"FNAME": "C"}))
    result = coalesce(head, [queued(2, None, key=head.key), later])
    assert result is None


def test_fold_merges_nested_field_maps_one_level_down() -> None:
    folded = fold_payloads(
        [
            {"Email": "a@example.com", "Forenames": "Ada", "CustomFields": {"Region": "North", "VIP": True}},
            {"Email": "a@example.com", "Surname": "King", "CustomFields": {"Region": "South"}},
        ]
    )
    assert folded == {
        "Email": "a@example.com",
        "Forenames": "Ada",
        "Surname": "King",
        "CustomFields": {"Region": "South", "VIP": True},
    }
