"""What an accessplanit answer that is not 2xx means for Tandem (pure): retry later, or a person has to act.

Transient (the delivery layer retries): 429, 5xx, 408, timeouts and connection failures, an exhausted request budget.
Permanent (dead-lettered with the reason): 400 validation errors — keeping the first field and every message, as the
execution log shows them — and 401/403/404/409 and anything else a retry cannot change.
"""

from __future__ import annotations

from typing import Any

import orjson

from tandem_shared.contracts import ErrorInfo

_TRANSIENT_STATUSES = frozenset({408, 425, 429})

_CLASS_BY_STATUS = {
    400: "ValidationError",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    408: "RequestTimeout",
    409: "Conflict",
    425: "TooEarly",
    429: "RateLimited",
}

_MEANING = {
    401: "the API key was refused; check the instance's accessplanit API key",
    403: "the API user may not do this; check its permissions in accessplanit",
    429: "accessplanit's rate limit was reached",
}


def is_transient_status(status: int) -> bool:
    return status >= 500 or status in _TRANSIENT_STATUSES


def field_errors(body: bytes) -> list[tuple[str | None, str]]:
    """`{"errors":[{"field","message"}]}` (accessplanit v2) or `{"Message": …}` (401) as (field, message) pairs."""
    try:
        parsed: Any = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return []
    if not isinstance(parsed, dict):
        return []
    errors = parsed.get("errors")
    if isinstance(errors, list):
        found = []
        for item in errors:
            if isinstance(item, dict) and item.get("message"):
                field = item.get("field")
                found.append((str(field) if field not in (None, "") else None, str(item["message"])))
        return found
    message = parsed.get("Message") or parsed.get("message") or parsed.get("error_description")
    return [(None, str(message))] if message else []


def classify_response(status: int, body: bytes, *, retry_after: str | None = None, action: str = "") -> ErrorInfo:
    """An accessplanit answer that is not 2xx as an ErrorInfo; `action` names what was attempted ("update user 7")."""
    errors = field_errors(body)
    parts = [f"{field}: {message}" if field else message for field, message in errors]
    detail = "; ".join(parts) or _MEANING.get(status) or "no details in the answer"
    if status == 429 and retry_after:
        detail = f"{detail}; retry after {retry_after}s"
    prefix = f"accessplanit answered {status}" + (f" to {action}" if action else "")
    return ErrorInfo(
        error_class=_CLASS_BY_STATUS.get(status, "ServerError" if status >= 500 else f"HTTP{status}"),
        message=f"{prefix}: {detail}",
        permanent=not is_transient_status(status),
        field=errors[0][0] if errors else None,
    )


def transport_failure(kind: str, detail: str, *, action: str = "") -> ErrorInfo:
    """No answer at all (timeout, refused connection): accessplanit may or may not have done it; retry."""
    target = f" while trying to {action}" if action else ""
    return ErrorInfo(error_class=kind, message=f"accessplanit did not answer{target}: {detail}", permanent=False)


def budget_exhausted(retry_after_s: float, *, action: str = "") -> ErrorInfo:
    target = f" to {action}" if action else ""
    return ErrorInfo(
        error_class="RateBudgetExhausted",
        message=(
            f"Tandem's accessplanit request budget is used up; not sending the request{target} now, "
            f"a slot frees up in {retry_after_s:.0f}s"
        ),
        permanent=False,
    )
