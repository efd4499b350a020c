"""The catch-up poller's position maths: where a round starts, what a page asks for, how the cursor moves.

Users are read in (DateUpdated, ID) order; the cursor is the last record passed to Kafka. Pure: the poller
service loads and saves cursors through its `CursorStore` port.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from tandem_shared.vendors.accessplanit.client import odata_string

ORDER = "DateUpdated,ID"
NEWEST_FIRST = "DateUpdated desc,ID desc"


def format_timestamp(moment: datetime) -> str:
    """accessplanit's own format: UTC with milliseconds and Z."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_timestamp(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _id_number(user_id: str) -> int:
    try:
        return int(user_id)
    except ValueError:
        return -1


@dataclass(frozen=True)
class Position:
    """A place in the (DateUpdated, ID) order. `user_id` None means "from this time on, inclusive"."""

    date_updated: str | None
    user_id: str | None = None

    def sort_key(self) -> tuple[datetime, int]:
        if self.date_updated is None:
            return (datetime.min.replace(tzinfo=UTC), -1)
        return (parse_timestamp(self.date_updated), _id_number(self.user_id or ""))

    def to_trace(self) -> dict[str, str | None]:
        """As the poll's trace record shows it: in accessplanit's field names."""
        return {"DateUpdated": self.date_updated, "ID": self.user_id}


@dataclass(frozen=True)
class Cursor:
    """The last record passed to Kafka, and where polling of this instance began (the overlap never reaches back
    before it: what changed before Tandem first polled is a backfill's job, not the poller's)."""

    position: Position
    floor: Position

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "date_updated": self.position.date_updated,
                "user_id": self.position.user_id,
                "floor_date_updated": self.floor.date_updated,
                "floor_user_id": self.floor.user_id,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Cursor:
        data = orjson.loads(raw)
        return cls(
            Position(data["date_updated"], data["user_id"]),
            Position(data["floor_date_updated"], data["floor_user_id"]),
        )

    @classmethod
    def starting_at(cls, position: Position) -> Cursor:
        return cls(position, position)

    def advanced_to(self, position: Position) -> Cursor:
        return replace(self, position=position) if position.sort_key() > self.position.sort_key() else self


def record_position(user: dict[str, Any]) -> Position | None:
    """Where a record read sits in the order; None for a record without a usable DateUpdated (never re-served by
    a `DateUpdated gt` page, so it cannot hold the cursor back)."""
    date, user_id = user.get("DateUpdated"), user.get("ID")
    if not isinstance(date, str) or user_id is None:
        return None
    try:
        parse_timestamp(date)
    except ValueError:
        return None
    return Position(date, str(user_id))


def page_filter(after: Position) -> str:
    """Strictly after `after` in (DateUpdated, ID) order; empty (everything) before the first record."""
    if after.date_updated is None:
        return ""
    date = odata_string(after.date_updated)
    if after.user_id is None:
        return f"DateUpdated ge {date}"
    return f"DateUpdated gt {date} or (DateUpdated eq {date} and ID gt {odata_string(after.user_id)})"


def round_start(cursor: Cursor, overlap_s: float) -> Position:
    """Where a round starts reading: a little before the cursor, because a write that committed late may carry a
    DateUpdated older than one already read (records read twice are recognized as duplicates)."""
    if overlap_s <= 0 or cursor.position.date_updated is None:
        return cursor.position
    back = Position(format_timestamp(parse_timestamp(cursor.position.date_updated) - timedelta(seconds=overlap_s)))
    return cursor.floor if back.sort_key() <= cursor.floor.sort_key() else back
