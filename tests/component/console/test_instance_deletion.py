"""A deleted instance in the console: the deletion is stored for good, its history kept and marked, and pause,
resume and replay refused with a reason (the console in-process, SQLite, the registry in memory, no broker)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from support.console_access import bearer, write_accounts
from support.traces import trace
from tandem_console.app import create_app
from tandem_console.settings import ConsoleSettings
from tandem_console.store import TraceStore
from tandem_shared.contracts import Stage, TraceStatus
from tandem_shared.instances import StaticInstanceRegistry, demo_instance

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
DELETED_AT = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
OTHER = demo_instance().model_copy(update={"id": "other", "name": "Other"})


@dataclass
class Console:
    client: httpx.AsyncClient
    registry: StaticInstanceRegistry
    database_url: str


def console_app(database_url: str, registry: StaticInstanceRegistry) -> httpx.AsyncClient:
    settings = ConsoleSettings(
        kafka_bootstrap_servers="127.0.0.1:9",
        database_url=database_url,
        log_json=False,
        accounts_file=write_accounts(Path(database_url.removeprefix("sqlite:///")).parent),
        allowed_hosts="console.test",
    )
    app = create_app(settings, registry)
    # No lifespan in-process (it would connect to Kafka): the store is created here, as the lifespan would.
    app.state.console.store.create()
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://console.test", headers=bearer("operator")
    )


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    database_url = f"sqlite:///{tmp_path / 'console.db'}"
    store = TraceStore(database_url)
    store.create()
    store.add(
        [
            trace("e1", "demo", Stage.INGEST, TraceStatus.SUCCEEDED, at=T0),
            trace("e1", "demo", Stage.MAPPER, TraceStatus.SUCCEEDED, at=T0 + timedelta(seconds=1)),
            trace("e2", "demo", Stage.INGEST, TraceStatus.SUCCEEDED, at=T0 + timedelta(minutes=1)),
            trace("e2", "demo", Stage.WRITER, TraceStatus.DEAD_LETTERED, at=T0 + timedelta(minutes=2)),
        ],
        topic="tandem.trace",
        next_offsets={0: 4},
    )
    store.close()
    registry = StaticInstanceRegistry([demo_instance(), OTHER])
    async with console_app(database_url, registry) as client:
        yield Console(client, registry, database_url)


async def test_a_deletion_is_stored_and_the_instance_kept_with_its_history_marked_deleted(console: Console) -> None:
    await console.registry.delete("demo", at=DELETED_AT)

    listed = (await console.client.get("/api/instances")).json()
    assert [(i["id"], i["state"], i["deleted_at"]) for i in listed] == [
        ("demo", "deleted", "2026-12-01T09:30:00Z"),
        ("other", "running", None),
    ]
    demo = (await console.client.get("/api/instances/demo")).json()
    assert (demo["version"], demo["direction"], demo["counts"]["succeeded"], demo["counts"]["failed"]) == (
        None,
        None,
        1,
        1,
    )
    executions = (await console.client.get("/api/executions", params={"instance": "demo"})).json()["items"]
    assert {e["execution_id"] for e in executions} == {"e1", "e2"}

    store = TraceStore(console.database_url)
    try:
        assert store.deletions() == {"demo": DELETED_AT}
        store.reset()  # a rebuild from tandem.trace: the deletion is not in the trace, so it stays
        assert store.deletions() == {"demo": DELETED_AT}
    finally:
        store.close()


async def test_pages_show_the_deleted_badge_and_no_pause_button(console: Console) -> None:
    await console.registry.delete("demo", at=DELETED_AT)
    listing = (await console.client.get("/instances")).text
    assert '<span class="badge deleted">Deleted</span>' in listing
    page = await console.client.get("/instances/demo")
    assert page.status_code == 200
    assert '<span class="badge deleted" id="instance-state">Deleted</span>' in page.text
    assert "at 2026-12-01 09:30:00 UTC" in page.text
    assert "/instances/demo/pause" not in page.text and "/instances/demo/resume" not in page.text
    assert "/instances/other/pause" in (await console.client.get("/instances/other")).text


@pytest.mark.parametrize(
    ("path", "refused"),
    [
        ("/api/instances/demo/pause", "a deleted instance cannot be paused"),
        ("/api/instances/demo/resume", "a deleted instance cannot be resumed"),
        ("/api/executions/e2/replay", "its executions are kept but not replayed"),
    ],
)
async def test_pause_resume_and_replay_of_a_deleted_instance_are_refused(
    console: Console, path: str, refused: str
) -> None:
    await console.registry.delete("demo", at=DELETED_AT)
    response = await console.client.post(path)
    assert response.status_code == 409
    assert response.json()["detail"] == f"instance 'demo' was deleted at 2026-12-01 09:30:00 UTC: {refused}"
    form = await console.client.post("/instances/demo/pause")
    assert form.status_code == 409 and "cannot be paused" in form.text


async def test_a_replay_of_many_skips_the_executions_of_a_deleted_instance(console: Console) -> None:
    await console.registry.delete("demo", at=DELETED_AT)
    body = (await console.client.post("/api/replay", params={"instance": "demo"})).json()
    assert (body["matched"], body["replayed"]) == (2, [])
    assert {s["execution_id"] for s in body["skipped"]} == {"e1", "e2"}
    assert all("was deleted at" in s["reason"] for s in body["skipped"])


async def test_the_deletion_outlives_the_tombstone(console: Console) -> None:
    """After a restart on a compacted topic, the registry knows nothing of the instance; the store does."""
    await console.registry.delete("demo", at=DELETED_AT)
    async with console_app(console.database_url, StaticInstanceRegistry([OTHER])) as restarted:
        demo = (await restarted.get("/api/instances/demo")).json()
        assert (demo["state"], demo["deleted_at"]) == ("deleted", "2026-12-01T09:30:00Z")
        assert (await restarted.get("/api/instances/nope")).status_code == 404


async def test_a_re_created_instance_is_live_again(console: Console) -> None:
    await console.registry.delete("demo", at=DELETED_AT)
    await console.registry.put(demo_instance())
    demo = (await console.client.get("/api/instances/demo")).json()
    assert (demo["state"], demo["deleted_at"], demo["version"]) == ("running", None, 1)
    assert [i["state"] for i in (await console.client.get("/api/instances")).json()] == ["running", "running"]
