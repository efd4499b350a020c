"""The console's SQLite store: idempotent batches, keyset pages, retention, and indexes that serve 100k executions."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, select

from support.traces import MISSING_EMAIL, trace
from tandem_console.domain import ExecutionStatus, ExecutionSummary
from tandem_console.filters import ExecutionFilter
from tandem_console.schema import forgotten_contacts
from tandem_console.store import Cursor, TraceStore, executions_query
from tandem_shared.contact_hash import contact_hash
from tandem_shared.contracts import ErasureRequest, Flow, Stage, TraceRecord, TraceStatus, Trigger
from tandem_shared.contracts.topics import ERASURE

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TOPIC = "tandem.trace"


# Postgres is the devstack's (tests/conftest.py), or the database TANDEM_TEST_POSTGRES_URL names: the tests empty it.
@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TraceStore]:
    if request.param == "postgres":
        url = str(request.getfixturevalue("postgres_url"))
    else:
        url = f"sqlite:///{tmp_path / 'console.db'}"
    s = TraceStore(url)
    s.create()
    s.reset()
    # A reset keeps the erasure tombstones (a rebuild must not bring erased contacts back); the Postgres database
    # outlives a test, so each test starts without the last one's.
    with s.engine.begin() as conn:
        conn.execute(delete(forgotten_contacts))
    yield s
    s.close()


def test_a_batch_read_twice_is_stored_once(store: TraceStore) -> None:
    records = [
        trace("e1", "acme", Stage.INGEST, TraceStatus.SUCCEEDED, at=T0, email="Ada@Example.com"),
        trace("e1", "acme", Stage.MAPPER, TraceStatus.FAILED, at=T0 + timedelta(seconds=1), error=MISSING_EMAIL),
    ]
    first = store.add(records, topic=TOPIC, next_offsets={0: 2})
    again = store.add(records, topic=TOPIC, next_offsets={0: 2})

    assert [r.record_id for r in first.records] == [r.record_id for r in records]
    assert again.records == []
    assert len(store.records(["e1"])["e1"]) == 2
    execution = store.execution("e1")
    assert execution is not None
    assert execution.status is ExecutionStatus.FAILED
    assert execution.record_count == 2
    assert store.offsets(TOPIC) == {0: 2}


def test_a_late_record_updates_its_execution(store: TraceStore) -> None:
    store.add([trace("e1", "acme", Stage.WRITER, TraceStatus.RETRY_PENDING, at=T0)], topic=TOPIC, next_offsets={1: 1})
    assert store.execution("e1").status is ExecutionStatus.PENDING  # type: ignore[union-attr]
    store.add(
        [trace("e1", "acme", Stage.WRITER, TraceStatus.SUCCEEDED, at=T0 + timedelta(seconds=30), attempt=2)],
        topic=TOPIC,
        next_offsets={1: 2},
    )
    assert store.execution("e1").status is ExecutionStatus.SUCCEEDED  # type: ignore[union-attr]
    assert store.offsets(TOPIC) == {1: 2}


def test_pages_follow_each_other_without_gaps_or_repeats(store: TraceStore) -> None:
    # Pairs of executions started in the same microsecond: the cursor must break the tie by id.
    records = [
        trace(f"e{i:03d}", "acme", Stage.INGEST, TraceStatus.SUCCEEDED, at=T0 + timedelta(seconds=i // 2))
        for i in range(25)
    ]
    store.add(records, topic=TOPIC, next_offsets={0: 25})
    seen: list[str] = []
    cursor: Cursor | None = None
    while True:
        page = store.list_executions(ExecutionFilter(), limit=7, before=cursor)
        seen.extend(e.execution_id for e in page.items)
        if page.next_cursor is None:
            break
        cursor = Cursor.decode(page.next_cursor)
    assert len(seen) == 25
    assert sorted(seen, reverse=True) == seen


def test_purge_drops_old_executions_with_their_records(store: TraceStore) -> None:
    old = trace("old", "acme", Stage.INGEST, TraceStatus.SUCCEEDED, at=T0 - timedelta(days=30))
    new = trace("new", "acme", Stage.INGEST, TraceStatus.SUCCEEDED, at=T0)
    store.add([old, new], topic=TOPIC, next_offsets={0: 2})
    assert store.purge(T0 - timedelta(days=14)) == 1
    assert store.execution("old") is None
    assert store.records(["old"]) == {}
    assert store.execution("new") is not None


def test_reset_forgets_records_and_offsets(store: TraceStore) -> None:
    store.add([trace("e1", "acme", Stage.INGEST, TraceStatus.SUCCEEDED, at=T0)], topic=TOPIC, next_offsets={0: 1})
    store.reset()
    assert store.execution("e1") is None
    assert store.offsets(TOPIC) == {}


# --- 100,000 executions: every listing query is served by an index, never a full scan or a sort -----------------

N = 100_000
INSTANCES = [f"inst-{i}" for i in range(20)]


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TraceStore]:
    s = TraceStore(f"sqlite:///{tmp_path_factory.mktemp('big') / 'console.db'}")
    s.create()
    rng = random.Random(7)
    statuses = [ExecutionStatus.SUCCEEDED] * 90 + [ExecutionStatus.FAILED] * 7 + [ExecutionStatus.HELD] * 3
    rows = []
    for i in range(N):
        started = T0 - timedelta(seconds=N - i)
        original = None if i % 10 else f"x{i - 1:07d}"
        rows.append(
            ExecutionSummary(
                execution_id=f"x{i:07d}",
                original_execution_id=original,
                instance_id=rng.choice(INSTANCES),
                flow=rng.choice(list(Flow)),
                trigger=Trigger.WEBHOOK,
                status=rng.choice(statuses),
                changes_detected=rng.random() > 0.2,
                contact_email=f"person{i % 5000}@example.com",
                accessplanit_user_id=str(i % 5000),
                summary="done",
                error_message=None,
                started_at=started,
                finished_at=started + timedelta(milliseconds=40),
                record_count=3,
            )
        )
    s.bulk_insert_executions(rows)
    s.analyze()
    yield s
    s.close()


SINCE = T0 - timedelta(hours=6)
UNTIL = T0 - timedelta(hours=1)


@pytest.mark.parametrize(
    "where",
    [
        ExecutionFilter(),
        ExecutionFilter(status=ExecutionStatus.FAILED),
        ExecutionFilter(instance="inst-3"),
        ExecutionFilter(instance="inst-3", status=ExecutionStatus.FAILED),
        ExecutionFilter(instance="inst-3", status=ExecutionStatus.HELD, since=SINCE, until=UNTIL),
        ExecutionFilter(since=SINCE, until=UNTIL),
        ExecutionFilter(instance="inst-3", flow=Flow.MAILCHIMP_TO_ACCESSPLANIT, original_only=True),
        ExecutionFilter(instance="inst-3", exclude_no_changes=True),
        ExecutionFilter(email="person42@example.com"),
        ExecutionFilter(accessplanit_user_id="42"),
    ],
    ids=lambda w: ",".join(w.query_params()) or "all",
)
@pytest.mark.parametrize("paged", [False, True], ids=["first-page", "next-page"])
def test_listing_uses_an_index(big_store: TraceStore, where: ExecutionFilter, paged: bool) -> None:
    before = Cursor(int((T0 - timedelta(hours=2) - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1e6), "x")
    query = executions_query(where, limit=51, before=before if paged else None)
    plan = big_store.explain(query)

    scans = [line for line in plan if "executions" in line]
    assert scans, plan
    for line in scans:
        assert "USING" in line and "INDEX" in line, f"not served by an index: {plan}"
    if not where.email:
        # The index also delivers the newest-first order; a sort of the matches would grow with the table.
        assert not any("TEMP B-TREE" in line for line in plan), plan

    page = big_store.list_executions(where, limit=50, before=before if paged else None)
    assert page.items, "the query matched nothing, so its plan proves little"
    for execution in page.items:
        if where.status:
            assert execution.status is where.status
        if where.instance:
            assert execution.instance_id == where.instance
        if where.email:
            assert execution.contact_email == where.email


def test_counts_by_status_come_from_an_index(big_store: TraceStore) -> None:
    counts = big_store.status_counts("inst-3")
    assert sum(counts.values()) > N // 40
    assert counts[ExecutionStatus.FAILED] > 0
    assert big_store.last_run("inst-3") is not None


def test_the_sqlite_store_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "console" / "console.db"
    path.parent.mkdir()
    path.touch(mode=0o644)  # a store an earlier version created with the default umask
    s = TraceStore(f"sqlite:///{path}")
    s.create()
    s.add([trace("e-private", "demo", Stage.INGEST, TraceStatus.SUCCEEDED, at=T0)], topic=TOPIC, next_offsets={0: 1})
    try:
        files = sorted(path.parent.iterdir())
        assert [f.name for f in files] == ["console.db", "console.db-shm", "console.db-wal"]
        assert {f.name: oct(f.stat().st_mode & 0o777) for f in files} == {f.name: "0o600" for f in files}
    finally:
        s.close()


def test_a_forgotten_contact_is_erased_and_not_stored_again(store: TraceStore) -> None:
    def of(execution_id: str, instance_id: str, email: str, at: datetime) -> TraceRecord:
        return trace(execution_id, instance_id, Stage.INGEST, TraceStatus.SUCCEEDED, at=at, email=email)

    before = [
        of("ada-demo", "demo", "Ada@Example.com", T0),
        of("ada-other", "other", "ada@example.com", T0),
        of("bob-demo", "demo", "bob@example.com", T0),
    ]
    store.add(before, topic=TOPIC, next_offsets={0: 3})
    request = ErasureRequest(
        request_id="r1", email="ADA@example.com", instance_id="demo", requested_at=T0 + timedelta(minutes=1)
    )

    assert store.forget(request, topic=ERASURE, next_offsets={0: 1}) == 1

    def stored() -> set[str]:
        return {e.execution_id for e in store.list_executions(ExecutionFilter(), limit=10).items}

    assert stored() == {"ada-other", "bob-demo"}
    assert store.offsets(ERASURE) == {0: 1}
    # tandem.trace read again (a rebuild, a late record): what was erased stays erased; what came later is kept.
    later = of("ada-later", "demo", "ada@example.com", T0 + timedelta(minutes=2))
    store.add([*before, later], topic=TOPIC, next_offsets={0: 4})
    assert stored() == {"ada-other", "bob-demo", "ada-later"}
    with store.engine.connect() as conn:
        tombstones = conn.execute(select(forgotten_contacts)).all()
    assert [(t.contact, t.instance_id) for t in tombstones] == [(contact_hash("ada@example.com"), "demo")]
