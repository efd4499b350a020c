"""Verification of `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>` signature headers.

Mailchimp signs webhooks this way; our accessplanit simulator (an assumption, see its ASSUMPTIONS.md) does too.
"""

from __future__ import annotations

import hashlib
import hmac
import re

# The header is whatever the sender put there, read before anything is authenticated: the timestamp is taken only as
# ASCII digits of a plausible length (Unix seconds have 10 digits until the year 2286), so an absurd one is refused
# as unsigned rather than reaching int() or float arithmetic (`t=1<thousands of zeros>` overflowed them into a 500).
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_DIGEST = re.compile(r"[0-9a-f]{64}")


def sign(secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def parse_header(header: str | None) -> tuple[int, str] | None:
    """(timestamp, hex digest) of a well-formed header; None for anything else. Never raises."""
    if not header:
        return None
    parts = dict(item.strip().split("=", 1) for item in header.split(",") if "=" in item)
    timestamp, digest = parts.get("t", ""), parts.get("v1", "")
    if not _TIMESTAMP.fullmatch(timestamp) or not _DIGEST.fullmatch(digest):
        return None
    return int(timestamp), digest


def verify(secret: str, body: bytes, header: str | None, *, now: float, tolerance_s: int) -> bool:
    parsed = parse_header(header)
    if parsed is None:
        return False
    timestamp, given = parsed
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected.encode(), given.encode())
