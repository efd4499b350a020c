"""The console's tables (SQLAlchemy Core; SQLite or Postgres) and how an execution summary maps to a row.

The tables are created (`metadata.create_all`) by `TraceStore.create` when the console or a rebuild starts; the
queries over them are `store.TraceStore`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, MetaData, String, Table, Text
from sqlalchemy.engine import URL, RowMapping, make_url

from tandem_console.domain import ExecutionStatus, ExecutionSummary
from tandem_shared.contracts import Flow, Trigger, email_key

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

metadata = MetaData()

trace_records = Table(
    "trace_records",
    metadata,
    Column("record_id", String(64), primary_key=True),
    Column("execution_id", String(64), nullable=False),
    Column("stage", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("finished_us", BigInteger, nullable=False),
    Column("body", Text, nullable=False),
    Index("ix_trace_execution", "execution_id"),
)

executions = Table(
    "executions",
    metadata,
    Column("execution_id", String(64), primary_key=True),
    Column("original_execution_id", String(64)),
    Column("is_original", Boolean, nullable=False),
    Column("instance_id", String(64), nullable=False),
    Column("flow", String(32)),
    Column("trigger", String(16)),
    Column("status", String(16), nullable=False),
    Column("changes_detected", Boolean),
    Column("contact_email", String(320)),
    Column("email_key", String(320)),
    Column("accessplanit_user_id", String(64)),
    Column("summary", Text, nullable=False),
    Column("error_message", Text),
    Column("started_us", BigInteger, nullable=False),
    Column("finished_us", BigInteger, nullable=False),
    Column("record_count", Integer, nullable=False),
    # Newest-first listing, alone or narrowed by instance and/or status: the index delivers rows in order.
    Index("ix_exec_started", "started_us", "execution_id"),
    Index("ix_exec_instance_started", "instance_id", "started_us", "execution_id"),
    Index("ix_exec_status_started", "status", "started_us", "execution_id"),
    Index("ix_exec_instance_status_started", "instance_id", "status", "started_us", "execution_id"),
    Index("ix_exec_email_started", "email_key", "started_us", "execution_id"),
    Index("ix_exec_user_started", "accessplanit_user_id", "started_us", "execution_id"),
    Index("ix_exec_original", "original_execution_id"),
    Index("ix_exec_finished", "finished_us"),
)

consumer_offsets = Table(
    "consumer_offsets",
    metadata,
    Column("topic", String(249), primary_key=True),
    Column("partition_no", Integer, primary_key=True),
    Column("next_offset", BigInteger, nullable=False),
)

# Instances deleted with `tandem instances delete`, as the console saw their tombstones: compaction removes a
# tombstone from `tandem.instances` after a while, and the trace does not say it, so the console keeps it here (not
# emptied by `reset`: it cannot be rebuilt from tandem.trace).
deleted_instances = Table(
    "deleted_instances",
    metadata,
    Column("instance_id", String(64), primary_key=True),
    Column("deleted_us", BigInteger, nullable=False),
)

# Contacts erased (`tandem contacts forget`), by keyed hash, never by address: a trace record about one that started
# before its erasure (a late record, or `tandem.trace` read again by a rebuild) is not stored again. "*" is every
# instance. Not emptied by `reset`, for the same reason as deleted_instances.
forgotten_contacts = Table(
    "forgotten_contacts",
    metadata,
    Column("contact", String(64), primary_key=True),
    Column("instance_id", String(64), primary_key=True),
    Column("forgotten_us", BigInteger, nullable=False),
)


def to_us(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def database_url(url: str) -> URL:
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def row_to_summary(row: RowMapping | Mapping[str, Any]) -> ExecutionSummary:
    return ExecutionSummary(
        execution_id=row["execution_id"],
        original_execution_id=row["original_execution_id"],
        instance_id=row["instance_id"],
        flow=Flow(row["flow"]) if row["flow"] else None,
        trigger=Trigger(row["trigger"]) if row["trigger"] else None,
        status=ExecutionStatus(row["status"]),
        changes_detected=row["changes_detected"],
        contact_email=row["contact_email"],
        accessplanit_user_id=row["accessplanit_user_id"],
        summary=row["summary"],
        error_message=row["error_message"],
        started_at=from_us(row["started_us"]),
        finished_at=from_us(row["finished_us"]),
        record_count=row["record_count"],
    )


def summary_to_row(summary: ExecutionSummary) -> dict[str, Any]:
    return {
        "execution_id": summary.execution_id,
        "original_execution_id": summary.original_execution_id,
        "is_original": summary.original_execution_id is None,
        "instance_id": summary.instance_id,
        "flow": summary.flow.value if summary.flow else None,
        "trigger": summary.trigger.value if summary.trigger else None,
        "status": summary.status.value,
        "changes_detected": summary.changes_detected,
        "contact_email": summary.contact_email,
        "email_key": email_key(summary.contact_email) if summary.contact_email else None,
        "accessplanit_user_id": summary.accessplanit_user_id,
        "summary": summary.summary,
        "error_message": summary.error_message,
        "started_us": to_us(summary.started_at),
        "finished_us": to_us(summary.finished_at),
        "record_count": summary.record_count,
    }


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the pages read while the consumer writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()
