"""HTTP helpers every webhook route shares: problem responses, refusals and a size-bounded body read."""

from __future__ import annotations

import re

from fastapi import Request
from fastapi.responses import JSONResponse, Response

# Another delivery of the same change holds its claim and is publishing it: that takes milliseconds (at most the
# publish timeout), after which a retry finds the change stored, or the claim given back and publishes it itself.
BEING_STORED_RETRY_AFTER_S = 1
# A Content-Length worth believing: ASCII digits only (str.isdigit() also admits "²", which int() refuses) and
# short enough for int() and any limit; anything else is left to the streamed count below.
_CONTENT_LENGTH = re.compile(r"[0-9]{1,15}")


class Refused(Exception):
    """Raised inside a route's handler to end it with `response` (a problem answer), from however deep."""

    def __init__(self, response: Response) -> None:
        self.response = response


def problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"status": status, "title": title, "detail": detail}, status_code=status, headers=headers)


def being_stored() -> JSONResponse:
    """The answer of every webhook route to a delivery whose change is being stored right now by another one."""
    detail = "the same change is being stored right now; retry shortly"
    return problem(503, "Service Unavailable", detail, {"Retry-After": str(BEING_STORED_RETRY_AFTER_S)})


async def read_body(request: Request, limit: int) -> bytes:
    """Reads at most `limit` bytes; a larger body is refused before it is buffered whole."""
    declared = request.headers.get("content-length")
    if declared and _CONTENT_LENGTH.fullmatch(declared) and int(declared) > limit:
        raise OverflowError
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise OverflowError
    return bytes(body)
