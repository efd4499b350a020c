"""What Mailchimp is sent, and what its member answers hold (pure)."""

from __future__ import annotations

import re
from typing import Any

from tandem_shared.contracts import ErrorInfo, subscriber_hash

# Member fields worth keeping in the trace; the full document repeats the audience's every field and link.
_MEMBER_SUMMARY_FIELDS = (
    "id",
    "email_address",
    "unique_email_id",
    "contact_id",
    "status",
    "merge_fields",
    "last_changed",
    "list_id",
)

# The member fields Mailchimp's batch subscribe takes (shared/reference/mailchimp-api.md §7.1); a body with any
# other field (tags, for instance) keeps its own PUT.
BATCH_MEMBER_FIELDS = frozenset(
    {
        "email_address",
        "email_type",
        "status",
        "status_if_new",
        "merge_fields",
        "interests",
        "language",
        "vip",
        "location",
        "ip_signup",
        "ip_opt",
        "timestamp_signup",
        "timestamp_opt",
    }
)
# Mailchimp's own ceiling per batch subscribe call.
BATCH_MAX_MEMBERS = 500

# Every member event; `campaign` is not about a contact. All sources stay on: Tandem's own API writes come back
# as echoes, which the mapper recognises, rather than hiding every other integration's API writes as well.
WEBHOOK_EVENTS = {
    "subscribe": True,
    "unsubscribe": True,
    "profile": True,
    "cleaned": True,
    "upemail": True,
    "campaign": False,
}
WEBHOOK_SOURCES = {"user": True, "admin": True, "api": True}


def member_summary(member: dict[str, Any]) -> dict[str, Any]:
    return {k: member[k] for k in _MEMBER_SUMMARY_FIELDS if k in member}


def upsert_body(payload: dict[str, Any], status_if_new: str) -> dict[str, Any] | ErrorInfo:
    """The PUT body. A sync never sets `status`: `status_if_new` applies to new members only, so an existing
    member's choice (unsubscribed, cleaned, pending) is never overridden."""
    email = payload.get("email_address")
    if not isinstance(email, str) or not email.strip():
        return ErrorInfo(
            error_class="InvalidCommand",
            message="the command's Mailchimp member has no email_address",
            permanent=True,
            field="email_address",
        )
    body = {k: v for k, v in payload.items() if k != "status"}
    body.setdefault("status_if_new", status_if_new)
    return body


def batchable(body: dict[str, Any]) -> bool:
    return body.keys() <= BATCH_MEMBER_FIELDS


def patch_body(upsert: dict[str, Any]) -> dict[str, Any]:
    """The PATCH body for an email change: the new address and profile, no status of any kind."""
    return {k: v for k, v in upsert.items() if k not in ("status", "status_if_new")}


def batch_subscribe_body(members: list[dict[str, Any]]) -> dict[str, Any]:
    """`POST /lists/{id}`: each member applied exactly as its PUT would be."""
    return {"members": members, "update_existing": True}


def batch_answers(document: Any) -> dict[str, dict[str, Any]] | None:
    """The member documents of a batch subscribe's answer by member id (subscriber hash); None if it has none."""
    if not isinstance(document, dict):
        return None
    new, updated = document.get("new_members"), document.get("updated_members")
    if not isinstance(new, list) or not isinstance(updated, list):
        return None
    answers: dict[str, dict[str, Any]] = {}
    for member in (*new, *updated):
        if isinstance(member, dict) and isinstance(member.get("email_address"), str):
            answers[subscriber_hash(member["email_address"])] = member
    return answers


_ITEM_FIELD = re.compile(r"^members\.item:(\d+)(?:\.(.+))?$")


def invalid_items(problem: dict[str, Any] | None, count: int) -> dict[int, list[tuple[str, str]]]:
    """The items a batch subscribe's whole-call 400 names (`errors[].field` = `members.item:N.<field>`), by index,
    each with its (field, message) pairs; empty when it names none of the `count` items sent."""
    errors = problem.get("errors") if isinstance(problem, dict) else None
    named: dict[int, list[tuple[str, str]]] = {}
    for error in errors if isinstance(errors, list) else []:
        if not isinstance(error, dict):
            continue
        match = _ITEM_FIELD.match(str(error.get("field") or ""))
        if match and int(match.group(1)) < count:
            field = match.group(2) or ""
            named.setdefault(int(match.group(1)), []).append((field, str(error.get("message") or "")))
    return named


def invalid_item_error(reasons: list[tuple[str, str]]) -> ErrorInfo:
    """One member Mailchimp's batch subscribe refused as schema-invalid: permanent, as it was sent."""
    text = "; ".join(f"{field}: {message}" if field else message for field, message in reasons)
    return ErrorInfo(
        error_class="InvalidResource",
        message=f"Invalid Resource: Mailchimp refused the member's data as sent ({text})",
        permanent=True,
        field=next((field for field, _ in reasons if field), None),
    )


def webhook_body(url: str) -> dict[str, Any]:
    return {"url": url, "events": WEBHOOK_EVENTS, "sources": WEBHOOK_SOURCES}
