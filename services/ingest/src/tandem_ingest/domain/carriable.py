"""Whether a parsed JSON body can travel through Tandem as it is (pure).

Python's `json` reads what Tandem cannot carry on: a lone surrogate (`"\\ud800"`) is no Unicode text, so the
event could not be encoded for Kafka (the sender got 503 and retried for ever), and nesting deeper than the
contract parser's limit (pydantic's, about 200 levels with the event around it) was published and then skipped
as unreadable by the mapper. Such a body is refused here with a 400; whatever passes can be read downstream.
"""

from __future__ import annotations

from typing import Any

from tandem_ingest.domain.errors import InvalidPayload

# accessplanit's user record is flat apart from its custom fields; far below the event's own parsing limit.
MAX_DEPTH = 32


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check_carriable(body: Any, max_depth: int = MAX_DEPTH) -> None:
    """Raises InvalidPayload when `body` (as `json.loads` gave it) nests deeper than `max_depth` or holds text that
    is not Unicode."""
    pending: list[tuple[Any, int]] = [(body, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, str):
            if _has_lone_surrogate(value):
                raise InvalidPayload("body holds a lone surrogate (\\ud800-\\udfff): not Unicode text")
        elif isinstance(value, dict | list):
            if depth > max_depth:
                raise InvalidPayload(f"body is nested deeper than {max_depth} levels")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str) and _has_lone_surrogate(key):
                    raise InvalidPayload("body holds a lone surrogate (\\ud800-\\udfff): not Unicode text")
                pending.append((item, depth + 1))
