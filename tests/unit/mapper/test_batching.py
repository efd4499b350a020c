from __future__ import annotations

from datetime import UTC, datetime

from tandem_mapper.domain.batching import rounds
from tandem_shared.contracts import ChangeEvent, ChangeKind, ContactIdentity, System, Trigger

NOW = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)


def change(
    source: System, *, user: str | None = None, email: str, old: str | None = None, instance: str = "i"
) -> ChangeEvent:
    fields = {"Email": email} if source is System.ACCESSPLANIT else {"EMAIL": email}
    return ChangeEvent(
        event_id=f"{source.value}-{user}-{email}",
        execution_id="x",
        instance_id=instance,
        source=source,
        kind=ChangeKind.EMAIL_CHANGED if old else ChangeKind.UPDATED,
        identity=ContactIdentity(accessplanit_user_id=user, email=email, old_email=old),
        fields=fields,
        occurred_at=NOW,
        received_at=NOW,
        trigger=Trigger.WEBHOOK,
    )


def test_one_contacts_changes_go_to_successive_rounds_in_batch_order_and_other_contacts_share_them() -> None:
    a = change(System.ACCESSPLANIT, user="1", email="a@example.com")
    b = change(System.ACCESSPLANIT, user="2", email="b@example.com")
    batch = [a, b, a, a, b]
    assert rounds(batch) == [[0, 1], [2, 4], [3]]


def test_changes_that_touch_the_same_address_or_user_never_share_a_round() -> None:
    batch = [
        change(System.ACCESSPLANIT, user="1", email="ada@example.com"),
        # Mailchimp's change of the same person: another key, the same address.
        change(System.MAILCHIMP, email="ADA@example.com"),
        # The user's address changes: the user's last address is read and written.
        change(System.ACCESSPLANIT, user="1", email="ada@new.example"),
        # Mailchimp's upemail from the old address: the old address's state moves.
        change(System.MAILCHIMP, email="ada@new.example", old="ada@example.com"),
        change(System.MAILCHIMP, email="grace@example.com"),
    ]
    assert rounds(batch) == [[0, 4], [1], [2], [3]]


def test_the_same_contact_of_two_instances_shares_a_round() -> None:
    batch = [
        change(System.ACCESSPLANIT, user="1", email="a@example.com", instance="one"),
        change(System.ACCESSPLANIT, user="1", email="a@example.com", instance="two"),
    ]
    assert rounds(batch) == [[0, 1]]


def test_an_empty_batch_has_no_rounds() -> None:
    assert rounds([]) == []
