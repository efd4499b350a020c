"""Which accessplanit user one SyncCommand is about (pure): the writer's choice among users sharing an address.

The adapter (`tandem_writer.targets.accessplanit`) decides and calls the client; the request bodies are built in
`tandem_shared.vendors.accessplanit.bodies`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

DELETED = "Deleted"


def _updated_at(user: dict[str, Any]) -> datetime:
    value = user.get("DateUpdated")
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except ValueError:
            pass
    return datetime.min.replace(tzinfo=UTC)


def _numeric_id(user: dict[str, Any]) -> int:
    try:
        return int(str(user.get("ID")))
    except ValueError:
        return -1


@dataclass(frozen=True)
class Match:
    """The user a write goes to, or None; `others` are further active users sharing the address."""

    user: dict[str, Any] | None
    others: tuple[str, ...] = ()
    deleted: tuple[str, ...] = field(default=())

    @property
    def ambiguous(self) -> bool:
        return bool(self.others)


def choose_user(users: list[dict[str, Any]]) -> Match:
    """Among users sharing an email: the most recently updated active one (ties: the newest ID).

    Deleted users are never written to; they are reported so a person can decide (restore one, or remove the contact).
    """
    active = [u for u in users if u.get("Status") != DELETED]
    deleted = tuple(str(u.get("ID")) for u in users if u.get("Status") == DELETED)
    if not active:
        return Match(None, deleted=deleted)
    ordered = sorted(active, key=lambda u: (_updated_at(u), _numeric_id(u)), reverse=True)
    return Match(ordered[0], tuple(str(u.get("ID")) for u in ordered[1:]), deleted)


def moved_away(user: dict[str, Any] | None, email: str) -> bool:
    """Whether `user` (the one Tandem last saw at `email`, found by id once no user has `email`) is an active user
    that accessplanit has since given another address: it moved, and a change made at `email` is its."""
    if user is None or user.get("Status") == DELETED:
        return False
    address = user.get("Email")
    return isinstance(address, str) and bool(address.strip()) and address.strip().lower() != email.strip().lower()
