"""Masking of secrets in anything that leaves a process: logs, traces, error messages."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MASK = "***"
_SENSITIVE_KEY = re.compile(r"(api[_-]?key|authorization|password|secret|token|signature|apikey)", re.IGNORECASE)
# Mailchimp keys (32 hex + data centre) and bearer credentials inside free text.
_SENSITIVE_TEXT = (
    re.compile(r"\b[0-9a-z]{32}-us\d+\b", re.IGNORECASE),
    re.compile(r"(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+"),
)


def redact_text(text: str) -> str:
    text = _SENSITIVE_TEXT[0].sub(MASK, text)
    return _SENSITIVE_TEXT[1].sub(lambda m: f"{m.group(1)} {MASK}", text)


def redact(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {
            k: (MASK if isinstance(k, str) and _SENSITIVE_KEY.search(k) and v not in (None, "") else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value
