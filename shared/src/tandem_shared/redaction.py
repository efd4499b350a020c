"""Masking of secrets in anything that leaves a process: logs, traces, error messages."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

MASK = "***"
_SENSITIVE_KEY = re.compile(r"(api[_-]?key|authorization|password|secret|token|signature|apikey)", re.IGNORECASE)
# Mailchimp keys (32 hex + data centre) and bearer credentials inside free text.
_SENSITIVE_TEXT = (
    re.compile(r"\b[0-9a-z]{32}-us\d+\b", re.IGNORECASE),
    re.compile(r"(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+"),
)


def redact_text(text: str) -> str:
    # Every trace masks every string it carries; the substring checks let the common clean string skip both
    # regular expressions (each pattern needs its substring to match at all).
    if "-u" in text or "-U" in text:
        text = _SENSITIVE_TEXT[0].sub(MASK, text)
    if "Bearer" in text or "Basic" in text:
        text = _SENSITIVE_TEXT[1].sub(lambda m: f"{m.group(1)} {MASK}", text)
    return text


@lru_cache(maxsize=4096)
def _sensitive_key(key: str) -> bool:
    """Field names repeat from record to record; each is matched once."""
    return _SENSITIVE_KEY.search(key) is not None


def redact(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {
            k: (MASK if isinstance(k, str) and _sensitive_key(k) and v not in (None, "") else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value
