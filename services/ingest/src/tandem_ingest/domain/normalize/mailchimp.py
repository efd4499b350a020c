"""Mailchimp audience webhook deliveries → ChangeEvent (pure).

Mailchimp POSTs `application/x-www-form-urlencoded` bodies with PHP-style bracketed keys
(`data[merges][FNAME]=Ada`, `data[merges][ADDRESS][city]=Leeds`); `parse_form` turns them into nested dicts the way
PHP does, refusing what PHP would silently mangle. The samples are in shared/fixtures/mailchimp-webhooks/.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from tandem_ingest.domain.errors import InvalidPayload
from tandem_ingest.domain.times import in_range
from tandem_shared.contracts import (
    ChangeEvent,
    ChangeKind,
    ContactIdentity,
    System,
    Trigger,
    canonical_json,
    deterministic_event_id,
    subscriber_hash,
)

MAX_FIELDS = 1000
MAX_DEPTH = 6

_KEY = re.compile(r"^(?P<name>[^\[\]]+)(?P<brackets>(?:\[[^\[\]]*\])*)$")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")

_KINDS = {
    "subscribe": ChangeKind.CREATED,
    "profile": ChangeKind.UPDATED,
    "upemail": ChangeKind.EMAIL_CHANGED,
    "unsubscribe": ChangeKind.UNSUBSCRIBED,
    "cleaned": ChangeKind.CLEANED,
}


@dataclass(frozen=True)
class Ignored:
    """A well-formed delivery that is not about a contact (e.g. `campaign`): acknowledged, nothing published."""

    event_type: str
    reason: str


def split_key(key: str) -> list[str]:
    """`data[merges][FNAME]` → ["data", "merges", "FNAME"]; `tags[]` → ["tags", ""] (append)."""
    match = _KEY.match(key)
    if match is None:
        raise InvalidPayload(f"form field name {key!r} is not a name with [bracketed] parts")
    segments = [match.group("name"), *_SEGMENT.findall(match.group("brackets"))]
    if len(segments) > MAX_DEPTH:
        raise InvalidPayload(f"form field name {key!r} is nested deeper than {MAX_DEPTH} levels")
    return segments


def _assign(root: dict[str, Any], key: str, segments: list[str], value: str) -> None:
    node: dict[str, Any] | list[Any] = root
    for position, segment in enumerate(segments):
        last = position == len(segments) - 1
        if isinstance(node, list):
            if segment != "":
                raise InvalidPayload(f"form field {key!r} mixes [] and [name] at the same level")
            if last:
                node.append(value)
                return
            child: dict[str, Any] | list[Any] = [] if segments[position + 1] == "" else {}
            node.append(child)
            node = child
            continue
        if segment == "":
            raise InvalidPayload(f"form field {key!r} mixes [] and [name] at the same level")
        if last:
            if isinstance(node.get(segment), dict | list):
                raise InvalidPayload(f"form field {key!r} is both a value and a group of fields")
            node[segment] = value
            return
        want_list = segments[position + 1] == ""
        existing = node.get(segment)
        if existing is None:
            existing = [] if want_list else {}
            node[segment] = existing
        elif isinstance(existing, str):
            raise InvalidPayload(f"form field {key!r} is both a value and a group of fields")
        elif isinstance(existing, dict) == want_list:
            raise InvalidPayload(f"form field {key!r} mixes [] and [name] at the same level")
        node = existing


def parse_form(raw: bytes) -> dict[str, Any]:
    """A urlencoded body with PHP-style keys as nested dicts (lists for `[]`). Later duplicates win, as in PHP."""
    try:
        text = raw.decode("utf-8")
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except UnicodeDecodeError as exc:
        raise InvalidPayload("body is not UTF-8 text") from exc
    except ValueError as exc:
        raise InvalidPayload(f"body is not a urlencoded form: {exc}") from exc
    result: dict[str, Any] = {}
    for key, value in pairs:
        _assign(result, key, split_key(key), value)
    return result


def parse_fired_at(value: Any) -> datetime:
    """`fired_at` is `YYYY-MM-DD HH:MM:SS` in UTC, without a zone."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidPayload("fired_at is missing")
    try:
        parsed = datetime.fromisoformat(value.strip())
        parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidPayload(f"fired_at is not 'YYYY-MM-DD HH:MM:SS': {value!r}") from exc
    return in_range(parsed, "fired_at")


def _optional(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidPayload(f"data[{key}] must be a single value")
    return value if value.strip() else None


def _required(data: dict[str, Any], key: str) -> str:
    value = _optional(data, key)
    if value is None:
        raise InvalidPayload(f"data[{key}] is missing")
    return value


def flat_fields(data: dict[str, Any]) -> dict[str, Any]:
    """The merges as one flat dict of merge tags (ADDRESS keeps its parts), plus the delivery's other data."""
    merges = data.get("merges", {})
    if not isinstance(merges, dict):
        raise InvalidPayload("data[merges] must be a group of merge fields")
    fields: dict[str, Any] = dict(merges)
    for key, value in data.items():
        if key == "merges":
            continue
        if not isinstance(value, str):
            raise InvalidPayload(f"data[{key}] must be a single value")
        fields[key] = value
    return fields


def normalize_webhook(
    *,
    instance_id: str,
    audience_id: str | None,
    form: dict[str, Any],
    execution_id: str,
    received_at: datetime,
) -> ChangeEvent | Ignored:
    event_type = form.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise InvalidPayload("type is missing: not a Mailchimp webhook delivery")
    kind = _KINDS.get(event_type)
    if kind is None:
        reason = "campaign events are not about a contact" if event_type == "campaign" else "not a synced event type"
        return Ignored(event_type, reason)
    fired_at_raw = form.get("fired_at")
    occurred_at = parse_fired_at(fired_at_raw)
    data = form.get("data")
    if not isinstance(data, dict):
        raise InvalidPayload("data[…] fields are missing")
    list_id = _required(data, "list_id")
    if audience_id and list_id != audience_id:
        raise InvalidPayload(f"data[list_id] {list_id} is not this instance's audience")

    action = _optional(data, "action")
    old_email: str | None = None
    if event_type == "upemail":
        email = _required(data, "new_email")
        old_email = _required(data, "old_email")
        member_ref = _optional(data, "new_id")
        fields: dict[str, Any] = {"email": email, "old_email": old_email, "list_id": list_id}
        if member_ref:
            fields["id"] = member_ref
    else:
        email = _required(data, "email")
        member_ref = _optional(data, "id")
        fields = flat_fields(data)
        if event_type == "unsubscribe" and action == "delete":
            # Archived or deleted in Mailchimp, which is not the contact withdrawing consent.
            kind = ChangeKind.DELETED

    # Redeliveries repeat the body exactly; two edits of one member within the same second differ in their data.
    data_digest = hashlib.sha256(canonical_json(data)).hexdigest()
    return ChangeEvent(
        event_id=deterministic_event_id(
            System.MAILCHIMP.value,
            instance_id,
            list_id,
            event_type,
            member_ref or email,
            str(fired_at_raw),
            data_digest,
        ),
        execution_id=execution_id,
        instance_id=instance_id,
        source=System.MAILCHIMP,
        kind=kind,
        identity=ContactIdentity(email=email, old_email=old_email, mailchimp_member_id=subscriber_hash(email)),
        fields=fields,
        occurred_at=occurred_at,
        received_at=received_at,
        trigger=Trigger.WEBHOOK,
        source_action=f"{event_type} ({action})" if action else event_type,
    )
