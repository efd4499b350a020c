"""The audit log: every operator action (who, what, when, and how it ended), kept in the console's store.

Each entry is also published on `tandem.trace` as an `AuditRecord` (stage `audit`), and the console's trace
consumer stores the audit records it reads (its own, another replica's, the CLI's): `audit_ids` keeps each audit id
once, so an entry recorded here and read back from the trace, or read again by a rebuild, is one entry. Not emptied
by `reset` or a rebuild (the trace keeps 14 days, the log longer), nor by the executions' purge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text, insert, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from tandem_console.schema import from_us, metadata, to_us
from tandem_shared.contracts import AuditRecord
from tandem_shared.ids import new_id

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
# Each audit_log row's audit id (a table of its own: audit_log predates them, and an existing store gains this table
# on start, where it could not gain a column without a migration). Rows from before have none.
audit_ids = Table(
    "audit_ids",
    metadata,
    Column("audit_id", String(64), primary_key=True),
    Column("entry_id", Integer, nullable=False, unique=True),
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
    audit_id: str = field(default_factory=new_id, compare=False)

    def as_record(self, source: str = "console") -> AuditRecord:
        return AuditRecord(
            audit_id=self.audit_id,
            at=self.at,
            who=self.who,
            via=self.via,
            action=self.action,
            target=self.target,
            outcome=self.outcome,
            source=source,
        )

    @classmethod
    def of(cls, record: AuditRecord) -> AuditEntry:
        return cls(record.at, record.who, record.via, record.action, record.target, record.outcome, record.audit_id)


class AuditLog:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create(self) -> None:
        audit_log.create(self._engine, checkfirst=True)
        audit_ids.create(self._engine, checkfirst=True)

    def record(self, entry: AuditEntry) -> bool:
        """Stores the entry unless its audit id is stored already; whether it was new."""
        try:
            with self._engine.begin() as conn:
                if conn.scalar(select(audit_ids.c.audit_id).where(audit_ids.c.audit_id == entry.audit_id)):
                    return False
                entry_id = self._insert(conn, entry)
                conn.execute(insert(audit_ids).values(audit_id=entry.audit_id, entry_id=entry_id))
        except IntegrityError:  # another writer stored the same id in between
            return False
        return True

    def _insert(self, conn: Connection, entry: AuditEntry) -> int:
        inserted = conn.execute(
            insert(audit_log).values(
                at_us=to_us(entry.at),
                who=entry.who,
                via=entry.via,
                action=entry.action,
                target=entry.target,
                outcome=entry.outcome,
            )
        )
        key = inserted.inserted_primary_key
        assert key is not None  # an INSERT of one row always has it
        return int(key[0])

    def latest(self, limit: int = 200) -> list[AuditEntry]:
        query = (
            select(audit_log, audit_ids.c.audit_id)
            .outerjoin(audit_ids, audit_ids.c.entry_id == audit_log.c.entry_id)
            .order_by(audit_log.c.at_us.desc(), audit_log.c.entry_id.desc())
            .limit(limit)
        )
        with self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            AuditEntry(
                from_us(r["at_us"]),
                r["who"],
                r["via"],
                r["action"],
                r["target"],
                r["outcome"],
                r["audit_id"] or f"legacy-{r['entry_id']}",
            )
            for r in rows
        ]
