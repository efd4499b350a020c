"""Sessions ended by a logout, kept until they would have expired: a copy of the cookie (stolen, or left in a
browser) is worth nothing after its owner logged out.

The session itself stays in its signed cookie; only revocations are stored, in the console's store, so every
replica sharing the store (Postgres) and a restarted console refuse the same cookies. Stored as a SHA-256 of the
session id, and dropped once the session would have expired anyway.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import BigInteger, Column, String, Table, delete, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from tandem_console.schema import metadata

revoked_sessions = Table(
    "revoked_sessions",
    metadata,
    Column("sid_hash", String(64), primary_key=True),
    Column("expires_s", BigInteger, nullable=False),
)


def _hashed(sid: str) -> str:
    return hashlib.sha256(sid.encode("utf-8")).hexdigest()


class RevokedSessions:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create(self) -> None:
        revoked_sessions.create(self._engine, checkfirst=True)

    def revoke(self, sid: str, expires_s: int, now_s: float) -> None:
        """Until `expires_s` (the session's own expiry); the revocations that have run out go at the same time."""
        try:
            with self._engine.begin() as conn:
                conn.execute(delete(revoked_sessions).where(revoked_sessions.c.expires_s < int(now_s)))
                conn.execute(insert(revoked_sessions).values(sid_hash=_hashed(sid), expires_s=expires_s))
        except IntegrityError:  # revoked already (a second logout of the same cookie)
            pass

    def is_revoked(self, sid: str) -> bool:
        query = select(revoked_sessions.c.sid_hash).where(revoked_sessions.c.sid_hash == _hashed(sid))
        with self._engine.connect() as conn:
            return conn.scalar(query) is not None
