"""What a field holds, in terms both vendors' field types map onto (each vendor's `schema` maps its own types)."""

from __future__ import annotations

from enum import StrEnum


class Kind(StrEnum):
    TEXT = "text"
    PHONE = "phone"
    NUMBER = "number"
    DATE = "date"
    BIRTHDAY = "birthday"
    ADDRESS = "address"
    CHOICE = "choice"
    BOOL = "bool"
    OTHER = "other"


class SchemaUnreadable(Exception):
    """The vendor could not be read (no answer, an unexpected status, no budget); the message says why, briefly."""


class KeyRefused(Exception):
    """The vendor answered 401 to the API key."""
