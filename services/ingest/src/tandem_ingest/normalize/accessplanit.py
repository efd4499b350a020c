"""accessplanit User webhook deliveries → ChangeEvent (pure)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tandem_ingest.errors import InvalidPayload
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


def parse_timestamp(value: Any, field: str) -> datetime:
    if not isinstance(value, str) or not value:
        raise InvalidPayload(f"{field} must be an ISO 8601 timestamp")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidPayload(f"{field} is not an ISO 8601 timestamp: {value!r}") from exc
    if parsed.tzinfo is None:
        raise InvalidPayload(f"{field} has no time zone: {value!r}")
    return parsed


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
    """One accessplanit User record as a change. Webhook and poller share this, so both produce the same event id."""
    user_id = user.get("ID")
    if user_id in (None, ""):
        raise InvalidPayload("Data.ID is missing: the user record has no ID")
    occurred_at = parse_timestamp(user.get("DateUpdated"), "Data.DateUpdated")
    email = user.get("Email")
    if email is not None and not isinstance(email, str):
        raise InvalidPayload("Data.Email must be a string")
    updated_by = user.get("UpdatedByID")
    return ChangeEvent(
        event_id=deterministic_event_id(System.ACCESSPLANIT, instance_id, str(user_id), occurred_at.isoformat()),
        execution_id=execution_id,
        instance_id=instance_id,
        source=System.ACCESSPLANIT,
        kind=kind,
        identity=ContactIdentity(accessplanit_user_id=str(user_id), email=email),
        fields=user,
        occurred_at=occurred_at,
        received_at=received_at,
        trigger=trigger,
        updated_by_id=None if updated_by in (None, "") else str(updated_by),
        source_action=source_action,
    )


def normalize_webhook(
    *, instance_id: str, method: str, body: Any, execution_id: str, received_at: datetime
) -> ChangeEvent:
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
    return user_event(
        instance_id=instance_id,
        kind=kind,
        user=data,
        trigger=Trigger.WEBHOOK,
        execution_id=execution_id,
        received_at=received_at,
        source_action=f"{method.upper()} {body.get('Event') or kind.value}",
    )
