"""accessplanit User webhook deliveries and polled records → ChangeEvent (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tandem_ingest.domain.carriable import check_carriable
from tandem_ingest.domain.errors import InvalidPayload
from tandem_ingest.domain.times import in_range
from tandem_shared.contracts import (
    ChangeEvent,
    ChangeKind,
    ContactIdentity,
    System,
    Trigger,
    deterministic_event_id,
)

_KIND_BY_METHOD = {
    "POST": ChangeKind.CREATED,
    "PUT": ChangeKind.UPDATED,
    "PATCH": ChangeKind.UPDATED,
    "DELETE": ChangeKind.DELETED,
}

DELETED_STATUS = "Deleted"
_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")


def parse_timestamp(value: Any, field: str) -> datetime:
    if not isinstance(value, str) or not value:
        raise InvalidPayload(f"{field} must be an ISO 8601 timestamp")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidPayload(f"{field} is not an ISO 8601 timestamp: {value!r}") from exc
    if parsed.tzinfo is None:
        raise InvalidPayload(f"{field} has no time zone: {value!r}")
    return in_range(parsed, field)


def user_id_of(user: dict[str, Any]) -> str:
    user_id = user.get("ID")
    if user_id in (None, "") or isinstance(user_id, bool) or not isinstance(user_id, str | int):
        raise InvalidPayload("Data.ID is missing: the user record has no ID")
    # The ID ends up in API paths and Kafka keys: only what accessplanit issues (numeric strings) and a margin.
    if not _ID.fullmatch(str(user_id)):
        raise InvalidPayload(f"Data.ID {str(user_id)[:80]!r} is not an accessplanit ID")
    return str(user_id)


def record_kind(user: dict[str, Any]) -> ChangeKind:
    """What a polled record says happened last: deleted (soft), created (never updated since) or updated."""
    if user.get("Status") == DELETED_STATUS:
        return ChangeKind.DELETED
    created = user.get("DateCreated")
    return ChangeKind.CREATED if created and created == user.get("DateUpdated") else ChangeKind.UPDATED


def user_event(
    *,
    instance_id: str,
    kind: ChangeKind,
    user: dict[str, Any],
    trigger: Trigger,
    execution_id: str,
    received_at: datetime,
    source_action: str,
) -> ChangeEvent:
    """One accessplanit User record as a change. Webhook and poller share this, so both produce the same event id.

    The id is the user and its DateUpdated (every write moves it), plus "deleted" for deletions: a hard delete's
    webhook carries the last state before removal, which would otherwise repeat the id of that last update.
    """
    user_id = user_id_of(user)
    occurred_at = parse_timestamp(user.get("DateUpdated"), "Data.DateUpdated")
    check_carriable(user)  # the record travels whole in the event: webhook, API read and poll alike
    email = user.get("Email")
    if email is not None and not isinstance(email, str):
        raise InvalidPayload("Data.Email must be a string")
    if user.get("Status") == DELETED_STATUS:
        kind = ChangeKind.DELETED
    updated_by = user.get("UpdatedByID")
    if updated_by is not None and not isinstance(updated_by, str | int):
        raise InvalidPayload("Data.UpdatedByID must be an ID")
    discriminator = "deleted" if kind is ChangeKind.DELETED else None
    return ChangeEvent(
        event_id=deterministic_event_id(
            System.ACCESSPLANIT,
            instance_id,
            user_id,
            occurred_at.isoformat(),
            *([discriminator] if discriminator else []),
        ),
        execution_id=execution_id,
        instance_id=instance_id,
        source=System.ACCESSPLANIT,
        kind=kind,
        identity=ContactIdentity(accessplanit_user_id=user_id, email=email),
        fields=user,
        occurred_at=occurred_at,
        received_at=received_at,
        trigger=trigger,
        updated_by_id=None if updated_by in (None, "") else str(updated_by),
        source_action=source_action,
    )


def removed_user_event(
    *,
    instance_id: str,
    user_id: str,
    occurred_at: datetime,
    trigger: Trigger,
    execution_id: str,
    received_at: datetime,
    source_action: str,
) -> ChangeEvent:
    """A user accessplanit no longer has (its record cannot be read any more). A user is removed once: one id."""
    return ChangeEvent(
        event_id=deterministic_event_id(System.ACCESSPLANIT, instance_id, user_id, "removed"),
        execution_id=execution_id,
        instance_id=instance_id,
        source=System.ACCESSPLANIT,
        kind=ChangeKind.DELETED,
        identity=ContactIdentity(accessplanit_user_id=user_id),
        fields={"ID": user_id},
        occurred_at=occurred_at,
        received_at=received_at,
        trigger=trigger,
        source_action=source_action,
    )


@dataclass(frozen=True)
class WebhookDelivery:
    """A well-formed delivery. `record` is None when it only names the user (IDs-only payloads): read it first."""

    kind: ChangeKind
    user_id: str
    record: dict[str, Any] | None
    action: str
    timestamp: datetime | None


def parse_webhook(*, method: str, body: Any) -> WebhookDelivery:
    kind = _KIND_BY_METHOD.get(method.upper())
    if kind is None:
        raise InvalidPayload(f"method {method} is not an accessplanit webhook method (POST, PUT, PATCH, DELETE)")
    if not isinstance(body, dict):
        raise InvalidPayload("body must be a JSON object")
    module = body.get("Module")
    if module is not None and str(module).lower() != "user":
        raise InvalidPayload(f"module {module!r} is not synced; only User webhooks are accepted")
    data = body.get("Data")
    if not isinstance(data, dict):
        raise InvalidPayload("Data must be the user record as a JSON object")
    user_id = user_id_of(data)
    event = body.get("Event")
    action = f"{method.upper()} {event if isinstance(event, str) and event else kind.value}"
    try:
        timestamp = parse_timestamp(body.get("Timestamp"), "Timestamp")
    except InvalidPayload:
        timestamp = None
    record = data if "DateUpdated" in data else None
    return WebhookDelivery(kind, user_id, record, action, timestamp)


def normalize_webhook(
    *, instance_id: str, method: str, body: Any, execution_id: str, received_at: datetime
) -> ChangeEvent:
    """A delivery that carries the full record → its ChangeEvent (IDs-only deliveries need the record read first)."""
    delivery = parse_webhook(method=method, body=body)
    if delivery.record is None:
        raise InvalidPayload("Data carries only the user's ID; the record must be read from accessplanit first")
    return webhook_event(
        delivery, delivery.record, instance_id=instance_id, execution_id=execution_id, received_at=received_at
    )


def webhook_event(
    delivery: WebhookDelivery,
    record: dict[str, Any],
    *,
    instance_id: str,
    execution_id: str,
    received_at: datetime,
) -> ChangeEvent:
    if user_id_of(record) != delivery.user_id:
        raise InvalidPayload(f"the record read is user {record.get('ID')!r}, not user {delivery.user_id!r}")
    return user_event(
        instance_id=instance_id,
        kind=delivery.kind,
        user=record,
        trigger=Trigger.WEBHOOK,
        execution_id=execution_id,
        received_at=received_at,
        source_action=delivery.action,
    )
