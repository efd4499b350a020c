"""What to send accessplanit for one SyncCommand (pure): which user it is about, which fields change, the new user.

The adapter (`accessplanit.py`) does the HTTP; every decision is here so it can be tested without a server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tandem_shared.contracts import ErrorInfo

# What Tandem may write. MainCompanyID is set only when creating (the instance's default account): an update never
# moves a user to another account. Status is never written: deleting or restoring a user is a person's decision.
WRITABLE_FIELDS = frozenset(
    {
        "Forenames",
        "Surname",
        "Email",
        "Telephone",
        "Mobile",
        "JobTitle",
        "DateOfBirth",
        "MarketingOptIn",
        "ExternalID",
        "CustomFields",
    }
)
MANDATORY_ON_CREATE = ("Forenames", "Surname")
DELETED = "Deleted"


@dataclass(frozen=True)
class Desired:
    fields: dict[str, Any]
    ignored: tuple[str, ...] = ()


def desired_fields(payload: dict[str, Any]) -> Desired:
    """The payload's writable fields; anything else is reported, never sent (accessplanit would refuse the write)."""
    fields = {k: v for k, v in payload.items() if k in WRITABLE_FIELDS}
    custom = fields.get("CustomFields")
    if custom is not None and not isinstance(custom, dict):
        fields.pop("CustomFields")
    ignored = tuple(sorted(k for k in payload if k not in fields))
    return Desired(fields, ignored)


def _updated_at(user: dict[str, Any]) -> datetime:
    value = user.get("DateUpdated")
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except ValueError:
            pass
    return datetime.min.replace(tzinfo=UTC)


def _numeric_id(user: dict[str, Any]) -> int:
    try:
        return int(str(user.get("ID")))
    except ValueError:
        return -1


@dataclass(frozen=True)
class Match:
    """The user a write goes to, or None; `others` are further active users sharing the address."""

    user: dict[str, Any] | None
    others: tuple[str, ...] = ()
    deleted: tuple[str, ...] = field(default=())

    @property
    def ambiguous(self) -> bool:
        return bool(self.others)


def choose_user(users: list[dict[str, Any]]) -> Match:
    """Among users sharing an email: the most recently updated active one (ties: the newest ID).

    Deleted users are never written to; they are reported so a person can decide (restore one, or remove the contact).
    """
    active = [u for u in users if u.get("Status") != DELETED]
    deleted = tuple(str(u.get("ID")) for u in users if u.get("Status") == DELETED)
    if not active:
        return Match(None, deleted=deleted)
    ordered = sorted(active, key=lambda u: (_updated_at(u), _numeric_id(u)), reverse=True)
    return Match(ordered[0], tuple(str(u.get("ID")) for u in ordered[1:]), deleted)


def _same(current: Any, wanted: Any, *, name: str) -> bool:
    if current in (None, "") and wanted in (None, ""):
        return True
    if name == "Email" and isinstance(current, str) and isinstance(wanted, str):
        return current.strip().lower() == wanted.strip().lower()
    return bool(current == wanted)


def changed_fields(current: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
    """Only what differs: an update that changes nothing still moves DateUpdated and sends a webhook (an echo)."""
    changes: dict[str, Any] = {}
    for name, wanted in desired.items():
        if name == "CustomFields":
            existing = current.get("CustomFields") or {}
            custom = {k: v for k, v in wanted.items() if not _same(existing.get(k), v, name=k)}
            if custom:
                changes["CustomFields"] = custom
        elif not _same(current.get(name), wanted, name=name):
            changes[name] = wanted
    return changes


def create_body(desired: dict[str, Any], *, email: str, default_account_id: str | None) -> dict[str, Any] | ErrorInfo:
    """The new user's body, or why accessplanit would refuse it (permanent: retrying cannot add a missing name)."""
    missing = [name for name in MANDATORY_ON_CREATE if not str(desired.get(name) or "").strip()]
    if missing:
        names = " and ".join(missing)
        return ErrorInfo(
            error_class="MissingMandatoryField",
            message=(
                f"Cannot create an accessplanit user for {email}: {names} "
                f"{'are' if len(missing) > 1 else 'is'} mandatory in accessplanit and the contact has no value for "
                f"{'them' if len(missing) > 1 else 'it'}"
            ),
            permanent=True,
            field=missing[0],
        )
    if not default_account_id:
        return ErrorInfo(
            error_class="NoDefaultAccount",
            message=(
                f"Cannot create an accessplanit user for {email}: the instance has no default account "
                "(accessplanit.default_account_id) for users created from Mailchimp"
            ),
            permanent=True,
            field="MainCompanyID",
        )
    body = {k: v for k, v in desired.items() if v is not None and k != "CustomFields"}
    custom = {k: v for k, v in (desired.get("CustomFields") or {}).items() if v is not None}
    if custom:
        body["CustomFields"] = custom
    body["Email"] = email
    body["MainCompanyID"] = default_account_id
    return body
