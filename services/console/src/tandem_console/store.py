"""The console's store: trace records and the executions derived from them (SQLAlchemy Core; SQLite or Postgres).

The trace topic is the source of truth. The store keeps the next offset to read per partition in the same
transaction as the records, so a restart resumes where it stopped, and is idempotent on record_id, so reading a
record twice (a rebuild, a crash between insert and offset) never duplicates it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Select, Table, and_, create_engine, delete, event, func, insert, or_, select, true
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from tandem_console.domain import ExecutionStatus, ExecutionSummary, summarize
from tandem_console.filters import ExecutionFilter
from tandem_console.schema import (
    consumer_offsets,
    database_url,
    deleted_instances,
    executions,
    forgotten_contacts,
    from_us,
    metadata,
    row_to_summary,
    sqlite_pragmas,
    summary_to_row,
    to_us,
    trace_records,
)
from tandem_shared.contact_hash import contact_hash
from tandem_shared.contracts import ErasureRequest, TraceRecord, email_key
from tandem_shared.erasure import EVERY_INSTANCE

# Keeps IN (...) lists well under every database's bound-parameter limit.
CHUNK = 500


def chunks(items: Sequence[str], size: int = CHUNK) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(frozen=True)
class Cursor:
    """Keyset position in the newest-first list: the last execution shown."""

    started_us: int
    execution_id: str

    def encode(self) -> str:
        return f"{self.started_us}:{self.execution_id}"

    @classmethod
    def decode(cls, value: str) -> Cursor:
        us, sep, execution_id = value.partition(":")
        if not sep or not us.isdigit() or not execution_id:
            raise ValueError(f"not a page cursor: {value!r}")
        return cls(int(us), execution_id)


@dataclass(frozen=True)
class Page:
    items: list[ExecutionSummary]
    next_cursor: str | None


@dataclass(frozen=True)
class Added:
    """What one batch changed: the records new to the store and the executions they touched."""

    records: list[TraceRecord]
    executions: dict[str, list[TraceRecord]]


def executions_query(where: ExecutionFilter, *, limit: int, before: Cursor | None = None) -> Select[Any]:
    """Newest first, `limit` rows after the cursor. Public so the index test can EXPLAIN exactly this query."""
    c = executions.c
    conditions = []
    if where.instance:
        conditions.append(c.instance_id == where.instance)
    if where.status:
        conditions.append(c.status == where.status.value)
    if where.flow:
        conditions.append(c.flow == where.flow.value)
    if where.since:
        conditions.append(c.started_us >= to_us(where.since))
    if where.until:
        conditions.append(c.started_us < to_us(where.until))
    if where.original_only:
        conditions.append(c.is_original == true())
    if where.exclude_no_changes:
        conditions.append(or_(c.changes_detected.is_(None), c.changes_detected == true()))
    if where.email:
        prefix = email_key(where.email)
        conditions.append(and_(c.email_key >= prefix, c.email_key < prefix + "\uffff"))
    if where.accessplanit_user_id:
        conditions.append(c.accessplanit_user_id == where.accessplanit_user_id)
    if before is not None:
        # `started_us <= x` is an index range; the OR only breaks ties inside it.
        conditions.append(c.started_us <= before.started_us)
        conditions.append(or_(c.started_us < before.started_us, c.execution_id < before.execution_id))
    return select(executions).where(*conditions).order_by(c.started_us.desc(), c.execution_id.desc()).limit(limit)


def private_file(path: Path) -> None:
    """The store holds contacts' data: its directory and file are the service user's alone (0700/0600).

    SQLite gives the -wal and -shm files it creates next to the database the database file's own mode, so setting
    it on the file before SQLite opens it covers all three."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    path.chmod(0o600)  # an existing file keeps the mode it was created with; an upgrade narrows it here


def _forgotten(record: TraceRecord, forgotten: Mapping[tuple[str, str], int]) -> bool:
    if record.contact_email is None:
        return False
    contact = contact_hash(record.contact_email)
    at = max(forgotten.get((contact, record.instance_id), -1), forgotten.get((contact, EVERY_INSTANCE), -1))
    return to_us(record.started_at) <= at


class TraceStore:
    def __init__(self, url: str) -> None:
        parsed = database_url(url)
        self.dialect = parsed.get_backend_name()
        if self.dialect == "sqlite" and parsed.database and parsed.database != ":memory:":
            private_file(Path(parsed.database))
        self.engine: Engine = create_engine(parsed, pool_pre_ping=self.dialect != "sqlite")
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", sqlite_pragmas)

    def create(self) -> None:
        metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def reset(self) -> None:
        """Forget everything, offsets included: the next consumer start reads the topic from the beginning."""
        with self.engine.begin() as conn:
            for table in (trace_records, executions, consumer_offsets):
                conn.execute(delete(table))

    def _upsert(self, table: Table, keys: list[str]) -> Any:
        dialect_insert = sqlite.insert if self.dialect == "sqlite" else postgresql.insert
        stmt = dialect_insert(table)
        return stmt.on_conflict_do_update(
            index_elements=keys, set_={col.name: stmt.excluded[col.name] for col in table.c if col.name not in keys}
        )

    def _insert_new(self, table: Table, key: str) -> Any:
        dialect_insert = sqlite.insert if self.dialect == "sqlite" else postgresql.insert
        return dialect_insert(table).on_conflict_do_nothing(index_elements=[key])

    # --- writing ---------------------------------------------------------------------------------------------

    def offsets(self, topic: str) -> dict[int, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(consumer_offsets.c.partition_no, consumer_offsets.c.next_offset).where(
                    consumer_offsets.c.topic == topic
                )
            )
            return {int(p): int(o) for p, o in rows}

    def add(self, records: Sequence[TraceRecord], *, topic: str, next_offsets: Mapping[int, int]) -> Added:
        """Store a batch and the offsets after it in one transaction; re-derive the executions it touched.

        A record about a forgotten contact that started before it was forgotten is not stored (`forget`)."""
        with self.engine.begin() as conn:
            forgotten = self._forgotten(conn)
            unique = {r.record_id: r for r in records if not (forgotten and _forgotten(r, forgotten))}
            known: set[str] = set()
            for ids in chunks(list(unique)):
                known.update(conn.scalars(select(trace_records.c.record_id).where(trace_records.c.record_id.in_(ids))))
            new = [r for rid, r in unique.items() if rid not in known]
            if new:
                conn.execute(
                    self._insert_new(trace_records, "record_id"),
                    [
                        {
                            "record_id": r.record_id,
                            "execution_id": r.execution_id,
                            "stage": r.stage.value,
                            "status": r.status.value,
                            "finished_us": to_us(r.finished_at),
                            "body": r.model_dump_json(),
                        }
                        for r in new
                    ],
                )
            touched = self._records_of(conn, sorted({r.execution_id for r in new}))
            if touched:
                conn.execute(
                    self._upsert(executions, ["execution_id"]),
                    [summary_to_row(summarize(recs)) for recs in touched.values()],
                )
            if next_offsets:
                conn.execute(
                    self._upsert(consumer_offsets, ["topic", "partition_no"]),
                    [{"topic": topic, "partition_no": p, "next_offset": o} for p, o in next_offsets.items()],
                )
        return Added(new, touched)

    def forget(self, request: ErasureRequest, *, topic: str, next_offsets: Mapping[int, int]) -> int:
        """Erase one contact's executions (of one instance, or of all) with their records, remember its keyed hash
        so the same records are not stored again, and store the offsets after the request: one transaction.
        Returns how many executions went."""
        c = executions.c
        scope = [c.email_key == request.address]
        if request.instance_id is not None:
            scope.append(c.instance_id == request.instance_id)
        with self.engine.begin() as conn:
            ids = list(conn.scalars(select(c.execution_id).where(*scope)))
            for chunk in chunks(ids):
                conn.execute(delete(trace_records).where(trace_records.c.execution_id.in_(chunk)))
                conn.execute(delete(executions).where(c.execution_id.in_(chunk)))
            conn.execute(
                self._upsert(forgotten_contacts, ["contact", "instance_id"]),
                [
                    {
                        "contact": request.contact,
                        "instance_id": request.instance_id or EVERY_INSTANCE,
                        "forgotten_us": to_us(request.requested_at),
                    }
                ],
            )
            if next_offsets:
                conn.execute(
                    self._upsert(consumer_offsets, ["topic", "partition_no"]),
                    [{"topic": topic, "partition_no": p, "next_offset": o} for p, o in next_offsets.items()],
                )
        return len(ids)

    @staticmethod
    def _forgotten(conn: Connection) -> dict[tuple[str, str], int]:
        rows = conn.execute(
            select(forgotten_contacts.c.contact, forgotten_contacts.c.instance_id, forgotten_contacts.c.forgotten_us)
        )
        return {(contact, instance_id): int(us) for contact, instance_id, us in rows}

    def purge(self, older_than: datetime) -> int:
        """Drop executions that finished before the cutoff, with their records; returns how many."""
        cutoff = to_us(older_than)
        old = select(executions.c.execution_id).where(executions.c.finished_us < cutoff)
        with self.engine.begin() as conn:
            conn.execute(delete(trace_records).where(trace_records.c.execution_id.in_(old)))
            result = conn.execute(delete(executions).where(executions.c.finished_us < cutoff))
            return int(result.rowcount or 0)

    # --- reading ---------------------------------------------------------------------------------------------

    @staticmethod
    def _records_of(conn: Connection, execution_ids: Sequence[str]) -> dict[str, list[TraceRecord]]:
        found: dict[str, list[TraceRecord]] = {}
        for ids in chunks(execution_ids):
            rows = conn.execute(
                select(trace_records.c.execution_id, trace_records.c.body).where(trace_records.c.execution_id.in_(ids))
            )
            for execution_id, body in rows:
                found.setdefault(execution_id, []).append(TraceRecord.model_validate_json(body))
        return found

    def records(self, execution_ids: Iterable[str]) -> dict[str, list[TraceRecord]]:
        with self.engine.connect() as conn:
            return self._records_of(conn, sorted(set(execution_ids)))

    def list_executions(self, where: ExecutionFilter, *, limit: int, before: Cursor | None = None) -> Page:
        with self.engine.connect() as conn:
            rows = conn.execute(executions_query(where, limit=limit + 1, before=before)).mappings().all()
        items = [row_to_summary(row) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = Cursor(last["started_us"], last["execution_id"]).encode()
        return Page(items, next_cursor)

    def execution(self, execution_id: str) -> ExecutionSummary | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(executions).where(executions.c.execution_id == execution_id)).mappings().first()
        return row_to_summary(row) if row is not None else None

    def derived_from(self, execution_id: str) -> list[ExecutionSummary]:
        """Retries and replays of an execution."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(executions)
                .where(executions.c.original_execution_id == execution_id)
                .order_by(executions.c.started_us)
            ).mappings()
            return [row_to_summary(row) for row in rows]

    def status_counts(self, instance_id: str) -> dict[ExecutionStatus, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(executions.c.status, func.count())
                .where(executions.c.instance_id == instance_id)
                .group_by(executions.c.status)
            )
            counts = dict.fromkeys(ExecutionStatus, 0)
            counts.update({ExecutionStatus(status): int(n) for status, n in rows})
            return counts

    def last_run(self, instance_id: str) -> datetime | None:
        with self.engine.connect() as conn:
            us = conn.scalar(select(func.max(executions.c.started_us)).where(executions.c.instance_id == instance_id))
        return from_us(int(us)) if us is not None else None

    def explain(self, query: Select[Any]) -> list[str]:
        """SQLite's plan for a query, one line per step (tests check that listing queries use the indexes)."""
        if self.dialect != "sqlite":
            raise NotImplementedError("EXPLAIN QUERY PLAN is SQLite's")
        compiled = query.compile(self.engine, compile_kwargs={"literal_binds": True})
        with self.engine.connect() as conn:
            return [str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}")]

    def bulk_insert_executions(self, rows: Sequence[ExecutionSummary]) -> None:
        """Executions without their records: for load tests of the listing queries."""
        with self.engine.begin() as conn:
            for start in range(0, len(rows), 10_000):
                conn.execute(insert(executions), [summary_to_row(s) for s in rows[start : start + 10_000]])

    def record_deletion(self, instance_id: str, deleted_at: datetime) -> None:
        """Remember that the instance was deleted (again: a later deletion of a re-created id replaces the time)."""
        with self.engine.begin() as conn:
            conn.execute(
                self._upsert(deleted_instances, ["instance_id"]),
                [{"instance_id": instance_id, "deleted_us": to_us(deleted_at)}],
            )

    def deletions(self) -> dict[str, datetime]:
        """Every instance recorded as deleted, with when."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(deleted_instances.c.instance_id, deleted_instances.c.deleted_us))
            return {instance_id: from_us(int(us)) for instance_id, us in rows}

    def analyze(self) -> None:
        """Refresh the planner's statistics (SQLite has none until asked)."""
        with self.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
