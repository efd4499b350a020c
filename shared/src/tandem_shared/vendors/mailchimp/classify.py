"""What a failed Mailchimp call means (pure): retry later (transient) or stop and tell a person (permanent).

Rules from Mailchimp's error glossary and observed behaviour (shared/reference/mailchimp-api.md §4–5): match on
status and title, never on `type`. Transient: 429 (with or without a body), 5xx (a 502 arrives as an HTML page from
Mailchimp's CDN), 403 without a JSON body (Mailchimp's high-volume throttle), request timeouts and network errors.
Everything else is permanent: the request as sent will never succeed (400 validation, compliance state, forgotten
address, 401 key, 403 with a JSON body, 404, 405).
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import orjson

from tandem_shared.contracts import ErrorInfo

MAX_DETAIL_CHARS = 500

# Titles of 400s that concern the contact's consent, not the data: a person has to act in Mailchimp.
_CONSENT_HINTS = {
    "Member In Compliance State": "the contact unsubscribed, bounced or is under compliance review in Mailchimp; "
    "a sync never re-subscribes it",
    "Forgotten Email Not Subscribed": "the address was permanently deleted in Mailchimp; only the contact can "
    "sign up again",
}

_TRANSIENT_STATUS = {408, 425, 429}

# Recorded detail texts of two 400 "Invalid Resource" answers about the address itself (mailchimp-api.md §10), with
# what a person can do about each.
_MALFORMED_ADDRESS = "Please provide a valid email address."
_FAKE_ADDRESS = "looks fake or invalid, please enter a real email address"
_ADDRESS_HINTS = {
    _MALFORMED_ADDRESS: "the address is not a valid email address; correct it in the source record",
    _FAKE_ADDRESS: "Mailchimp refuses addresses at disposable or test domains; enter the contact's real address "
    "in the source record",
}
_EMAIL_CHANGE_REFUSAL = "You can only update email addresses for members with a status of"


def is_email_change_refusal(document: dict[str, Any] | None) -> bool:
    """Mailchimp's refusal to change the address of a member who is not subscribed."""
    return document is not None and _EMAIL_CHANGE_REFUSAL in str(document.get("detail") or "")


def problem_document(body: bytes, content_type: str) -> dict[str, Any] | None:
    """The JSON error document, or None when the body is empty, HTML or otherwise not a JSON object."""
    if not body.strip():
        return None
    if "json" not in content_type.lower() and not body.lstrip().startswith(b"{"):
        return None
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


def error_class(title: str) -> str:
    """`Invalid Resource` → `InvalidResource`: a stable name to group errors by."""
    return re.sub(r"[^0-9A-Za-z]", "", title) or "MailchimpError"


def _field_errors(document: dict[str, Any]) -> list[tuple[str | None, str]]:
    errors = document.get("errors")
    if not isinstance(errors, list):
        return []
    found: list[tuple[str | None, str]] = []
    for item in errors:
        if isinstance(item, dict):
            field = item.get("field")
            found.append((str(field) if field not in (None, "") else None, str(item.get("message") or "")))
    return found


def _clip(text: str) -> str:
    return text if len(text) <= MAX_DETAIL_CHARS else text[: MAX_DETAIL_CHARS - 1] + "…"


def is_transient(status: int, has_document: bool) -> bool:
    return status in _TRANSIENT_STATUS or status >= 500 or (status == 403 and not has_document)


def classify_response(status: int, body: bytes, content_type: str) -> ErrorInfo:
    """Any non-2xx answer from Mailchimp."""
    document = problem_document(body, content_type)
    transient = is_transient(status, document is not None)
    if document is None:
        return ErrorInfo(
            error_class=f"HTTP{status}",
            message=_bodyless_message(status, body, content_type),
            permanent=not transient,
        )
    title = str(document.get("title") or f"HTTP {status}")
    detail = str(document.get("detail") or "").strip()
    fields = _field_errors(document)
    parts = [title]
    if detail and detail != title:
        parts.append(detail)
    message = ": ".join(parts)
    if fields:
        message += " (" + "; ".join(f"{f}: {m}" if f else m for f, m in fields) + ")"
    hint = _CONSENT_HINTS.get(title)
    field = next((f for f, _ in fields if f), None)
    address_hint = next((h for text, h in _ADDRESS_HINTS.items() if text in detail), None)
    if address_hint:
        hint, field = address_hint, field or "email_address"
    if hint:
        message += f" — {hint}"
    return ErrorInfo(
        error_class=error_class(title),
        message=_clip(message),
        permanent=not transient,
        field=field,
    )


def _bodyless_message(status: int, body: bytes, content_type: str) -> str:
    if status == 502 or "html" in content_type.lower():
        return (
            f"Mailchimp answered {status} with an HTML page instead of JSON "
            "(the request may have timed out at Mailchimp's CDN)"
        )
    if status in (403, 429) and not body.strip():
        return f"Mailchimp answered {status} without a body (it throttles this way at high volume)"
    if not body.strip():
        return f"Mailchimp answered {status} without a body"
    return f"Mailchimp answered {status} with an unexpected body: {_clip(body.decode('utf-8', 'replace'))}"


def classify_transport(exc: httpx.TransportError) -> ErrorInfo:
    """A request that got no HTTP answer: worth another try later, unless the configured URL cannot work."""
    if isinstance(exc, httpx.UnsupportedProtocol):
        return ErrorInfo(
            error_class="InvalidApiBaseUrl", message=f"Mailchimp API URL is not http(s): {exc}", permanent=True
        )
    if isinstance(exc, httpx.TimeoutException):
        return ErrorInfo(
            error_class="Timeout",
            message=f"Mailchimp did not answer in time ({type(exc).__name__})",
            permanent=False,
        )
    return ErrorInfo(
        error_class=type(exc).__name__,
        message=f"Mailchimp could not be reached: {str(exc) or type(exc).__name__}",
        permanent=False,
    )


def holds_server_slot(exc: httpx.TransportError) -> bool:
    """Whether Mailchimp may still be working on a request we gave up on (and counting it against the limit)."""
    return isinstance(exc, httpx.ReadTimeout | httpx.WriteTimeout | httpx.RemoteProtocolError)
