"""What accessplanit is sent for a User (pure): the writable fields, what changed, the body of a new user."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tandem_shared.contracts import ErrorInfo

# What Tandem may write, named as accessplanit's own demo client names them (reference §6). MainCompanyID is set only
# when creating (the instance's default account): an update never moves a user to another account. Status is never
# written: deleting or restoring a user is a person's decision. Derived fields (Fullname, HasEmail, counts) are never
# sent: accessplanit computes them. List fields (Title, Country, ContactMethod) hold platform lookup values Tandem
# cannot produce from Mailchimp, so they are not written either.
WRITABLE_FIELDS = frozenset(
    {
        "Forenames",
        "MiddleNames",
        "Surname",
        "Email",
        "Phone",
        "Mobile",
        "Address",
        "Town",
        "County",
        "Postcode",
        "JobTitle",
        "DOB",
        "MarketingOptIn",
        "SmsAuthorised",
        "ExternalID",
        "Tags",
        "CustomFields",
    }
)
MANDATORY_ON_CREATE = ("Forenames", "Surname")


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
