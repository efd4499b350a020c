"""The audit log: every operator action (who, what, when, and how it ended), kept in the console's store.

Not emptied by `reset` or a rebuild (it cannot be read back from `tandem.trace`), nor by the executions' purge.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text, insert, select
from sqlalchemy.engine import Engine

from tandem_console.schema import from_us, metadata, to_us

audit_log = Table(
    "audit_log",
    metadata,
    Column("entry_id", Integer, primary_key=True, autoincrement=True),
    Column("at_us", BigInteger, nullable=False),
    Column("who", String(320), nullable=False),
    Column("via", String(16), nullable=False),
    Column("action", String(100), nullable=False),
    Column("target", Text, nullable=False),
    Column("outcome", Integer, nullable=False),
    Index("ix_audit_at", "at_us"),
)


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    who: str
    via: str
    action: str
    target: str
    # The HTTP status the action was answered with: 2xx/3xx done, 4xx refused, 5xx failed.
    outcome: int


class AuditLog:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create(self) -> None:
        audit_log.create(self._engine, checkfirst=True)

    def record(self, entry: AuditEntry) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                insert(audit_log).values(
                    at_us=to_us(entry.at),
                    who=entry.who,
                    via=entry.via,
                    action=entry.action,
                    target=entry.target,
                    outcome=entry.outcome,
                )
            )

    def latest(self, limit: int = 200) -> list[AuditEntry]:
        query = select(audit_log).order_by(audit_log.c.at_us.desc(), audit_log.c.entry_id.desc()).limit(limit)
        with self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            AuditEntry(from_us(r["at_us"]), r["who"], r["via"], r["action"], r["target"], r["outcome"]) for r in rows
        ]
