"""A user whose unsigned delivery was answered before the user was read: the catch-up poll owes it a read."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Deferral:
    user_id: str
    arrived_ms: int  # when the (latest) deferred delivery arrived, epoch ms
