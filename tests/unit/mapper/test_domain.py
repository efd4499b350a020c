from __future__ import annotations

from datetime import UTC, datetime

from tandem_mapper.domain import decide
from tandem_shared.contracts import (
    ChangeEvent,
    ChangeKind,
    ContactIdentity,
    Direction,
    Operation,
    System,
    TraceStatus,
    Trigger,
    fingerprint,
)
from tandem_shared.instances import demo_instance

NOW = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)


def event(kind: ChangeKind = ChangeKind.CREATED, source: System = System.ACCESSPLANIT, **fields: object) -> ChangeEvent:
    data = {"ID": "7", "Forenames": " Ada ", "Surname": "Lovelace", "Email": "ada@example.com", **fields}
    return ChangeEvent(
        event_id="e1",
        execution_id="x1",
        instance_id="demo",
        source=source,
        kind=kind,
        identity=ContactIdentity(accessplanit_user_id="7", email=data["Email"] or None),  # type: ignore[arg-type]
        fields=data,
        occurred_at=NOW,
        received_at=NOW,
        trigger=Trigger.WEBHOOK,
    )


def test_an_accessplanit_user_maps_to_a_mailchimp_upsert_with_the_configured_fields() -> None:
    decision = decide(event(), demo_instance(), command_id="c1", now=NOW)
    assert decision.status is TraceStatus.SUCCEEDED
    command = decision.command
    assert command is not None
    assert command.target is System.MAILCHIMP
    assert command.operation is Operation.UPSERT
    assert command.payload == {
        "email_address": "ada@example.com",
        "status_if_new": "subscribed",
        "merge_fields": {"FNAME": "Ada", "LNAME": "Lovelace"},
    }
    assert command.fingerprint == fingerprint(command.payload)
    assert command.execution_id == "x1"


def test_same_change_gives_the_same_idempotency_key_and_a_different_value_does_not() -> None:
    one = decide(event(), demo_instance(), command_id="c1", now=NOW).command
    two = decide(event(), demo_instance(), command_id="c2", now=NOW).command
    other = decide(event(Surname="Byron"), demo_instance(), command_id="c3", now=NOW).command
    assert one and two and other
    assert one.idempotency_key == two.idempotency_key
    assert other.idempotency_key != one.idempotency_key


def test_a_user_without_email_is_a_permanent_failure_with_the_seed_message() -> None:
    decision = decide(event(Email=""), demo_instance(), command_id="c1", now=NOW)
    assert decision.status is TraceStatus.FAILED
    assert decision.command is None
    assert decision.error is not None
    assert decision.error.message == "User has no email address"
    assert decision.error.permanent


def test_deletes_never_cascade() -> None:
    decision = decide(event(ChangeKind.DELETED), demo_instance(), command_id="c1", now=NOW)
    assert decision.status is TraceStatus.SKIPPED
    assert decision.command is None


def test_a_direction_the_instance_does_not_sync_is_skipped_and_said_so() -> None:
    instance = demo_instance().model_copy(update={"direction": Direction.MAILCHIMP_TO_ACCESSPLANIT})
    decision = decide(event(), instance, command_id="c1", now=NOW)
    assert decision.status is TraceStatus.SKIPPED
    assert "not synced" in decision.summary
