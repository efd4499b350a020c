"""What both vendors' schema readers share: the kinds of field their types map onto, and how a read fails."""

from __future__ import annotations

from enum import StrEnum


class Kind(StrEnum):
    """What a field holds; each vendor's `schema` module maps its own field types onto these."""

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
