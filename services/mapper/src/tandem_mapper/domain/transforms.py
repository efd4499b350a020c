"""Value conversions between accessplanit and Mailchimp (pure).

Without a transform a value travels as text, trimmed. A value a transform cannot convert raises `TransformError`:
the field is left out of the write and the execution says why, the rest of the contact still syncs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any

from tandem_shared.contracts import Flow, Transform

# Mailchimp truncates text merge fields to 255 bytes; cutting first keeps what Tandem wrote equal to what it holds.
MAILCHIMP_TEXT_MAX_BYTES = 255
ADDRESS_PARTS = ("addr1", "addr2", "city", "state", "zip", "country")


class TransformError(ValueError):
    pass


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def truncate_utf8(text: str, limit: int = MAILCHIMP_TEXT_MAX_BYTES) -> str:
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", errors="ignore")


# accessplanit returns dates as .NET DateTime values in ISO 8601 (DOB: `1990-03-28T00:00:00`; reference §6). The date
# part is taken as written: converting between time zones could move a birthday to the day before.
_ISO_DATE_TIME = re.compile(r"(\d{4}-\d{2}-\d{2})T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?")


def parse_date(text: str) -> date:
    """An ISO 8601 date or date-time (the date as written), accessplanit's screen format DD/MM/YYYY, or YYYY/MM/DD
    (as Mailchimp accepts)."""
    timed = _ISO_DATE_TIME.fullmatch(text)
    if timed:
        text = timed.group(1)
    for pattern in ("%Y-%m-%d", "%d/%m/%Y", "%Y/%m/%d"):
        try:
            return datetime.strptime(text, pattern).date()
        except ValueError:
            continue
    raise TransformError(f"'{text}' is not a date (YYYY-MM-DD, an ISO 8601 date-time, or DD/MM/YYYY)")


# accessplanit's DOB is a non-nullable .NET DateTime: 0001-01-01 (DateTime.MinValue) may simply mean "none", and
# 9999-12-31 (MaxValue) likewise. A date outside this range is no contact's date: it counts as empty, never as a
# reason to refuse the record.
EARLIEST_DATE = date(1900, 1, 1)
LATEST_DATE = date(2199, 12, 31)


def is_placeholder(day: date) -> bool:
    return not EARLIEST_DATE <= day <= LATEST_DATE


def accessplanit_date(day: date) -> str:
    """How Tandem writes a date to accessplanit: ISO 8601, midnight with no zone, as the platform returns DOB."""
    return f"{day.isoformat()}T00:00:00"


def parse_birthday(text: str, *, from_date_of_birth: bool = False) -> str:
    """MM/DD (as Mailchimp stores birthdays), from MM/DD, M/D or DD/MM/YYYY; with `from_date_of_birth` (accessplanit →
    Mailchimp) also from accessplanit's DOB, an ISO 8601 date-time: the month and day as written, never shifted by a
    time zone."""
    full = re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{4})", text)
    iso = (_ISO_DATE_TIME.fullmatch(text) or re.fullmatch(r"(\d{4}-\d{2}-\d{2})", text)) if from_date_of_birth else None
    if iso:
        day_of = parse_date(iso.group(1))
        if is_placeholder(day_of):
            return ""
        month, day = day_of.month, day_of.day
    elif full:
        day, month = int(full.group(1)), int(full.group(2))
    else:
        short = re.fullmatch(r"(\d{1,2})/(\d{1,2})", text)
        if not short:
            raise TransformError(f"'{text}' is not a birthday in MM/DD format")
        month, day = int(short.group(1)), int(short.group(2))
    try:
        date(2000, month, day)  # a leap year, so 02/29 is a valid birthday
    except ValueError:
        raise TransformError(f"'{text}' is not a birthday in MM/DD format") from None
    return f"{month:02d}/{day:02d}"


def address_line(value: Any) -> str:
    """Mailchimp's ADDRESS object (or its one-string webhook form) as one line of text."""
    if isinstance(value, Mapping):
        parts = [_text(value.get(p)) for p in ADDRESS_PARTS]
    else:
        # Mailchimp's string form separates the parts with two spaces.
        parts = [p.strip() for p in re.split(r"\s{2,}", _text(value))]
    return ", ".join(p for p in parts if p)


def _number(value: Any) -> int | float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise TransformError(f"{value!r} is not a number")
    if isinstance(value, int | float):
        number: float = value
    else:
        try:
            number = float(str(value).strip().replace(",", ""))
        except ValueError:
            raise TransformError(f"'{value}' is not a number") from None
    return int(number) if float(number).is_integer() else number


def _plain(value: Any, flow: Flow) -> Any:
    if flow is Flow.ACCESSPLANIT_TO_MAILCHIMP:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        return truncate_utf8(_text(value))
    if isinstance(value, bool | int | float):
        return value
    return _text(value) or None


def _date(value: Any, flow: Flow) -> Any:
    text = _text(value)
    if not text:
        return "" if flow is Flow.ACCESSPLANIT_TO_MAILCHIMP else None
    parsed = parse_date(text)
    if is_placeholder(parsed):
        return "" if flow is Flow.ACCESSPLANIT_TO_MAILCHIMP else None
    return parsed.isoformat() if flow is Flow.ACCESSPLANIT_TO_MAILCHIMP else accessplanit_date(parsed)


def _birthday(value: Any, flow: Flow) -> Any:
    text = _text(value)
    if not text:
        return "" if flow is Flow.ACCESSPLANIT_TO_MAILCHIMP else None
    return parse_birthday(text, from_date_of_birth=flow is Flow.ACCESSPLANIT_TO_MAILCHIMP)


def _phone(value: Any, flow: Flow) -> Any:
    text = _text(value)
    if flow is Flow.ACCESSPLANIT_TO_MAILCHIMP:
        return truncate_utf8(text)
    return text or None


def _address(value: Any, flow: Flow) -> Any:
    if flow is Flow.ACCESSPLANIT_TO_MAILCHIMP:
        raise TransformError("an address cannot be split from one text field; it syncs Mailchimp → accessplanit")
    return address_line(value) or None


def _number_transform(value: Any, flow: Flow) -> Any:
    number = _number(value)
    if flow is Flow.ACCESSPLANIT_TO_MAILCHIMP:
        return "" if number is None else number
    return number


_TRANSFORMS: dict[Transform | None, Callable[[Any, Flow], Any]] = {
    None: _plain,
    Transform.DATE: _date,
    Transform.BIRTHDAY: _birthday,
    Transform.PHONE: _phone,
    Transform.ADDRESS: _address,
    Transform.NUMBER: _number_transform,
}


def convert(transform: Transform | None, value: Any, flow: Flow) -> Any:
    """The value as the target of `flow` takes it; raises TransformError when it cannot be converted."""
    return _TRANSFORMS[transform](value, flow)
