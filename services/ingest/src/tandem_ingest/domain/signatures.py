"""Verification of `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>` signature headers.

Mailchimp signs webhooks this way; our accessplanit simulator (an assumption, see its ASSUMPTIONS.md) does too.
"""

from __future__ import annotations

import hashlib
import hmac


def sign(secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, body: bytes, header: str | None, *, now: float, tolerance_s: int) -> bool:
    if not header:
        return False
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        timestamp = int(parts.get("t", ""))
    except ValueError:
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    # Bytes, not str: compare_digest raises on non-ASCII str, and the header is whatever the sender put there.
    return hmac.compare_digest(expected.encode(), parts.get("v1", "").encode("utf-8", "surrogateescape"))
