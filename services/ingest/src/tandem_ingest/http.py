"""HTTP helpers every webhook route shares: problem responses and a size-bounded body read."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse


def problem(status: int, title: str, detail: str) -> JSONResponse:
    return JSONResponse({"status": status, "title": title, "detail": detail}, status_code=status)


async def read_body(request: Request, limit: int) -> bytes:
    """Reads at most `limit` bytes; a larger body is refused before it is buffered whole."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise OverflowError
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise OverflowError
    return bytes(body)
