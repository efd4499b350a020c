"""The console's JSON API against a store filled from the real `tandem.trace` topic.

The test publishes TraceRecords to the real broker, as the stages would, and lets the console consume them; the
actions are checked on the topics they write to (`tandem.instances`, `tandem.changes`, `tandem.trace`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from support.console_access import bearer, write_accounts
from support.kafka import connect
from support.stack import make_test_instance
from support.topics import wait_for_records
from support.traces import MISSING_EMAIL, change_event, ingest_record, trace
from support.waiting import eventually
from tandem_console.app import create_app
from tandem_console.rebuild import rebuild
from tandem_console.settings import ConsoleSettings
from tandem_console.store import TraceStore
from tandem_devstack.processes import free_port
from tandem_devstack.stack import Ports
from tandem_shared.contracts import (
    ChangeEvent,
    ErrorInfo,
    Flow,
    Headers,
    Stage,
    TraceRecord,
    TraceStatus,
    Trigger,
    message_key,
    utcnow,
)
from tandem_shared.contracts.envelopes import change_envelope, trace_envelope
from tandem_shared.contracts.topics import CHANGES, TRACE
from tandem_shared.instance_store import put_instance, read_instances, remove_instance
from tandem_shared.kafka import KafkaProducer, caught_up, partitions_of, read_records, send_envelope

pytestmark = pytest.mark.integration

TRANSIENT = ErrorInfo(error_class="HTTP503", message="Mailchimp unavailable", permanent=False)


@dataclass
class World:
    client: httpx.AsyncClient
    kafka: str
    instance: str
    other_instance: str
    ids: dict[str, str]
    records: list[TraceRecord]
    now: datetime
    settings: ConsoleSettings


async def publish(kafka: str, events: list[ChangeEvent], records: list[TraceRecord]) -> None:
    """As ingest would: each change on tandem.changes, then the trace records."""
    producer = KafkaProducer(connect(kafka))
    await producer.start()
    try:
        for envelope in [*map(change_envelope, events), *map(trace_envelope, records)]:
            await (await send_envelope(producer, envelope))
    finally:
        await producer.stop()


def dataset(instance: str, other: str, now: datetime) -> tuple[dict[str, str], list[ChangeEvent], list[TraceRecord]]:
    ids = {name: uuid.uuid4().hex for name in ("ok", "fail", "nochange", "retry", "held", "pending", "old", "other")}
    s = timedelta(seconds=1)
    ok_email = f"ok.{ids['ok'][:6]}@example.com"

    ok_event = change_event(instance, ids["ok"], email=ok_email, user_id="2001", at=now - 40 * s)
    fail_event = change_event(instance, ids["fail"], email=None, user_id="2002", at=now - 300 * s)
    nochange_event = change_event(instance, ids["nochange"], email="same@example.com", user_id="2003", at=now - 250 * s)
    pending_event = change_event(instance, ids["pending"], email="slow@example.com", user_id="2004", at=now - 60 * s)
    old_event = change_event(instance, ids["old"], email=None, user_id="2005", at=now - timedelta(days=3))
    other_event = change_event(other, ids["other"], email="other@example.com", user_id="9", at=now - 100 * s)

    def rec(name: str, stage: Stage, status: TraceStatus, at: datetime, **kw: Any) -> TraceRecord:
        return trace(ids[name], instance if name != "other" else other, stage, status, at=at, **kw)

    records = [
        ingest_record(ok_event),
        rec("ok", Stage.MAPPER, TraceStatus.SUCCEEDED, now - 39 * s, changes_detected=True, email=ok_email),
        rec("ok", Stage.WRITER, TraceStatus.SUCCEEDED, now - 38 * s, changes_detected=True, email=ok_email),
        ingest_record(fail_event),
        rec(
            "fail",
            Stage.MAPPER,
            TraceStatus.FAILED,
            now - 299 * s,
            summary="Not sent to Mailchimp: User has no email address",
            error=MISSING_EMAIL,
            changes_detected=True,
            user_id="2002",
        ),
        ingest_record(nochange_event),
        rec("nochange", Stage.MAPPER, TraceStatus.SKIPPED, now - 249 * s, changes_detected=False),
        # A retry of "ok": its own execution, pointing back at the original.
        rec(
            "retry",
            Stage.WRITER,
            TraceStatus.FAILED,
            now - 30 * s,
            original_execution_id=ids["ok"],
            email=ok_email,
            error=TRANSIENT,
            changes_detected=True,
        ),
        rec(
            "retry",
            Stage.WRITER,
            TraceStatus.SUCCEEDED,
            now - 20 * s,
            original_execution_id=ids["ok"],
            email=ok_email,
            attempt=2,
            changes_detected=True,
        ),
        # Held by a paused instance; no source record was traced, so it cannot be replayed.
        rec(
            "held",
            Stage.MAPPER,
            TraceStatus.HELD,
            now - 200 * s,
            flow=Flow.MAILCHIMP_TO_ACCESSPLANIT,
            email="held@example.com",
        ),
        ingest_record(pending_event),
        rec("pending", Stage.MAPPER, TraceStatus.SUCCEEDED, now - 59 * s, changes_detected=True),
        rec("pending", Stage.WRITER, TraceStatus.FAILED, now - 58 * s, error=TRANSIENT, changes_detected=True),
        rec("pending", Stage.RETRY, TraceStatus.RETRY_PENDING, now - 57 * s),
        ingest_record(old_event),
        rec("old", Stage.MAPPER, TraceStatus.FAILED, now - timedelta(days=3) + s, error=MISSING_EMAIL),
        ingest_record(other_event),
    ]
    return ids, [ok_event, fail_event, nochange_event, pending_event, old_event, other_event], records


@pytest.fixture(scope="module")
async def world(kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    tmp: Path = tmp_path_factory.mktemp("console-api")
    suffix = uuid.uuid4().hex[:8]
    instance, other = f"c-{suffix}", f"c-{suffix}-other"
    # Nothing listens on these ports: should any mapper and writer pick up a replay, it reaches no real system.
    nowhere = Ports(*(free_port() for _ in range(6)))
    for instance_id in (instance, other):
        await put_instance(connect(kafka_bootstrap), make_test_instance(nowhere, instance_id))
    now = utcnow()
    ids, events, records = dataset(instance, other, now)
    await publish(kafka_bootstrap, events, records)

    # The same tests run on Postgres when TANDEM_TEST_POSTGRES_URL names a database.
    database_url = os.environ.get("TANDEM_TEST_POSTGRES_URL") or f"sqlite:///{tmp / 'console.db'}"
    settings = ConsoleSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        database_url=database_url,
        replay_limit=5,
        accounts_file=write_accounts(tmp),
        allowed_hosts="console.test",
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://console.test", timeout=30, headers=bearer("operator")
        ) as client:

            async def all_consumed() -> bool:
                body = (await client.get("/api/executions", params={"instance": instance, "limit": 100})).json()
                return len(body["items"]) == 7 and sum(e["record_count"] for e in body["items"]) == 16

            await eventually(all_consumed, timeout=60)
            yield World(client, kafka_bootstrap, instance, other, ids, records, now, settings)
    for instance_id in (instance, other):
        await remove_instance(connect(kafka_bootstrap), redis_url, instance_id)


async def listed(world: World, **params: Any) -> set[str]:
    response = await world.client.get("/api/executions", params={"instance": world.instance, "limit": 100, **params})
    assert response.status_code == 200, response.text
    names = {v: k for k, v in world.ids.items()}
    return {names.get(e["execution_id"], e["execution_id"]) for e in response.json()["items"]}


async def test_each_execution_gets_its_derived_status(world: World) -> None:
    body = (await world.client.get("/api/executions", params={"instance": world.instance})).json()
    by_id = {e["execution_id"]: e for e in body["items"]}
    expected = {
        "ok": ("succeeded", "green"),
        "fail": ("failed", "red"),
        "nochange": ("succeeded", "green"),
        "retry": ("succeeded", "green"),
        "held": ("held", "amber"),
        "pending": ("pending", "amber"),
        "old": ("failed", "red"),
    }
    assert {name: (by_id[world.ids[name]]["status"], by_id[world.ids[name]]["dot"]) for name in expected} == expected
    # Newest first.
    starts = [e["started_at"] for e in body["items"]]
    assert starts == sorted(starts, reverse=True)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "failed"}, {"fail", "old"}),
        ({"status": "succeeded"}, {"ok", "nochange", "retry"}),
        ({"status": "held"}, {"held"}),
        ({"status": "pending"}, {"pending"}),
        ({"flow": "mailchimp_to_accessplanit"}, {"held"}),
        ({"flow": "accessplanit_to_mailchimp", "status": "failed"}, {"fail", "old"}),
        ({"original_only": "true"}, {"ok", "fail", "nochange", "held", "pending", "old"}),
        ({"exclude_no_changes": "true"}, {"ok", "fail", "retry", "held", "pending", "old"}),
        ({"email": "OK."}, {"ok", "retry"}),
        ({"email": "slow@example.com"}, {"pending"}),
        ({"accessplanit_user_id": "2002"}, {"fail"}),
    ],
)
async def test_filters(world: World, params: dict[str, str], expected: set[str]) -> None:
    assert await listed(world, **params) == expected


async def test_time_range_filter(world: World) -> None:
    two_hours_ago = (world.now - timedelta(hours=2)).isoformat()
    one_day_ago = (world.now - timedelta(days=1)).isoformat()
    assert "old" not in await listed(world, since=two_hours_ago)
    assert await listed(world, since=two_hours_ago) == {"ok", "fail", "nochange", "retry", "held", "pending"}
    assert await listed(world, until=one_day_ago) == {"old"}
    window = {"since": (world.now - timedelta(seconds=100)).isoformat(), "until": world.now.isoformat()}
    assert await listed(world, **window) == {"ok", "retry", "pending"}


async def test_instance_filter_keeps_instances_apart(world: World) -> None:
    assert await listed(world, instance=world.other_instance) == {"other"}


async def test_pages_chain_through_every_execution(world: World) -> None:
    seen: list[str] = []
    params: dict[str, Any] = {"instance": world.instance, "limit": 3}
    while True:
        body = (await world.client.get("/api/executions", params=params)).json()
        seen.extend(e["execution_id"] for e in body["items"])
        if not body["next_cursor"]:
            break
        params["before"] = body["next_cursor"]
    assert len(seen) == len(set(seen))
    assert set(seen) >= {world.ids[n] for n in ("ok", "fail", "nochange", "retry", "held", "pending", "old")}


async def test_bad_input_is_a_4xx_with_the_reason(world: World) -> None:
    bad_status = await world.client.get("/api/executions", params={"status": "green"})
    assert bad_status.status_code == 422
    assert "status" in bad_status.text
    bad_cursor = await world.client.get("/api/executions", params={"before": "yesterday"})
    assert bad_cursor.status_code == 422
    assert (await world.client.get("/api/executions/nope")).status_code == 404
    assert (await world.client.get("/api/instances/nope")).status_code == 404
    assert (await world.client.post("/api/instances/nope/pause")).status_code == 404
    assert (await world.client.get("/api/contacts/timeline")).status_code == 422


async def test_detail_has_steps_outputs_and_logs_and_only_errors_on_request(world: World) -> None:
    response = await world.client.get(f"/api/executions/{world.ids['fail']}")
    assert response.status_code == 200
    detail = response.json()
    assert [s["stage"] for s in detail["steps"]] == ["ingest", "mapper"]
    assert detail["steps"][0]["output"]["data_out"]["execution_id"] == world.ids["fail"]
    assert detail["steps"][0]["output"]["data_in"]["Forenames"] == "Ada"
    assert detail["steps"][1]["error"]["message"] == "User has no email address"
    assert {line["level"] for line in detail["logs"]} == {"info", "error"}
    assert detail["replayable"] is True
    assert detail["execution"]["error_message"] == "User has no email address"

    errors = (await world.client.get(f"/api/executions/{world.ids['fail']}", params={"errors_only": "true"})).json()
    assert [line["message"] for line in errors["logs"]] == ["User has no email address"]
    assert all(line["level"] == "error" for s in errors["steps"] for line in s["logs"])


async def test_detail_lists_the_retries_of_an_execution(world: World) -> None:
    detail = (await world.client.get(f"/api/executions/{world.ids['ok']}")).json()
    assert world.ids["retry"] in {e["execution_id"] for e in detail["retries_and_replays"]}
    retry = (await world.client.get(f"/api/executions/{world.ids['retry']}")).json()
    assert retry["execution"]["original_execution_id"] == world.ids["ok"]
    assert retry["execution"]["is_original"] is False
    assert [s["attempt"] for s in retry["steps"]] == [1, 2]


async def test_contact_timeline(world: World) -> None:
    ok = next(r for r in world.records if r.execution_id == world.ids["ok"] and r.contact_email)
    body = (await world.client.get("/api/contacts/timeline", params={"email": ok.contact_email})).json()
    entries = [e["execution"]["execution_id"] for e in body["entries"]]
    assert entries[:2] == [world.ids["retry"], world.ids["ok"]]
    assert [s["stage"] for s in body["entries"][1]["steps"]] == ["ingest", "mapper", "writer"]
    by_user = (
        await world.client.get(
            "/api/contacts/timeline", params={"accessplanit_user_id": "2004", "instance": world.instance}
        )
    ).json()
    assert [e["execution"]["execution_id"] for e in by_user["entries"]] == [world.ids["pending"]]


async def test_instance_summary(world: World) -> None:
    summary = (await world.client.get(f"/api/instances/{world.instance}")).json()
    assert summary["state"] == "running"
    assert summary["version"] == 1
    assert summary["counts"] == {"succeeded": 3, "failed": 2, "held": 1, "pending": 1}
    retry_start = next(r.started_at for r in world.records if r.execution_id == world.ids["retry"])
    assert datetime.fromisoformat(summary["last_run_at"]) == retry_start
    listed_ids = {i["id"] for i in (await world.client.get("/api/instances")).json()}
    assert {world.instance, world.other_instance} <= listed_ids


async def test_pause_and_resume_publish_a_new_config_version(world: World) -> None:
    paused = await world.client.post(f"/api/instances/{world.other_instance}/pause")
    assert paused.status_code == 200, paused.text
    assert paused.json()["changed"] is True
    assert paused.json()["instance"]["state"] == "paused"
    assert paused.json()["instance"]["version"] == 2
    on_topic = (await read_instances(connect(world.kafka)))[world.other_instance]
    assert (on_topic.paused, on_topic.version) == (True, 2)

    again = await world.client.post(f"/api/instances/{world.other_instance}/pause")
    assert again.json()["changed"] is False
    assert again.json()["instance"]["version"] == 2

    resumed = await world.client.post(
        f"/api/instances/{world.other_instance}/resume", params={"discard_buffered": "true"}
    )
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["instance"]["state"] == "running"
    on_topic = (await read_instances(connect(world.kafka)))[world.other_instance]
    assert (on_topic.paused, on_topic.version, on_topic.discard_held_on_resume) == (False, 3, True)
    summary = (await world.client.get(f"/api/instances/{world.other_instance}")).json()
    assert (summary["state"], summary["version"]) == ("running", 3)


async def raw_change(kafka: str, execution_id: str) -> tuple[bytes | None, ChangeEvent] | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = await partitions_of(connect(kafka), CHANGES)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        while not await caught_up(consumer, end):
            for messages in (await consumer.getmany(*partitions, timeout_ms=500)).values():
                for message in messages:
                    event = ChangeEvent.model_validate_json(message.value)
                    if event.execution_id == execution_id:
                        return message.key, event
        return None
    finally:
        await consumer.stop()


async def test_replay_republishes_the_original_change_as_a_new_execution(world: World) -> None:
    response = await world.client.post(f"/api/executions/{world.ids['fail']}/replay")
    assert response.status_code == 202, response.text
    new_id = response.json()["execution_id"]
    assert new_id != world.ids["fail"]

    found = await eventually(lambda: raw_change(world.kafka, new_id), timeout=30)
    key, event = found
    original = next(r for r in world.records if r.execution_id == world.ids["fail"] and r.stage is Stage.INGEST)
    assert event.trigger is Trigger.REPLAY
    assert event.original_execution_id == world.ids["fail"]
    assert event.fields == original.output.data_out["fields"]  # type: ignore[index]
    assert event.event_id != original.output.data_out["event_id"]  # type: ignore[index]
    assert key == message_key(world.instance, "ap:2002").encode()

    traced = await wait_for_records(
        world.kafka,
        TRACE,
        TraceRecord,
        where=lambda r: r.execution_id == new_id,
        until=lambda found: any(r.stage is Stage.REPLAY for r in found),
    )
    replay = next(r for r in traced if r.stage is Stage.REPLAY)
    assert replay.original_execution_id == world.ids["fail"]
    assert replay.trigger is Trigger.REPLAY

    async def shown() -> dict[str, Any] | None:
        r = await world.client.get(f"/api/executions/{new_id}")
        return r.json() if r.status_code == 200 else None

    detail = await eventually(shown, timeout=30)
    assert detail["execution"]["original_execution_id"] == world.ids["fail"]
    assert detail["execution"]["trigger"] == "replay"
    assert new_id not in await listed(world, original_only="true")
    assert new_id in await listed(world, accessplanit_user_id="2002")


async def test_replaying_twice_publishes_once(world: World) -> None:
    first = await world.client.post(f"/api/executions/{world.ids['nochange']}/replay")
    second = await world.client.post(f"/api/executions/{world.ids['nochange']}/replay")
    assert first.status_code == second.status_code == 202, second.text
    assert first.json() == second.json()

    def replay_of_nochange(record: Any) -> bool:
        return dict(record.headers).get(Headers.ORIGINAL_EXECUTION_ID) == world.ids["nochange"].encode()

    [published] = await read_records(connect(world.kafka), [CHANGES], keep=replay_of_nochange)
    event = ChangeEvent.model_validate_json(published.value)
    assert (event.execution_id, event.event_id) == (first.json()["execution_id"], first.json()["event_id"])


async def test_an_execution_without_a_source_event_cannot_be_replayed(world: World) -> None:
    response = await world.client.post(f"/api/executions/{world.ids['held']}/replay")
    assert response.status_code == 409
    assert "source event" in response.json()["detail"]
    assert (await world.client.post("/api/executions/nope/replay")).status_code == 404


async def test_replay_a_filtered_set(world: World) -> None:
    response = await world.client.post(
        "/api/replay", params={"instance": world.instance, "original_only": "true", "status": "failed"}
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["matched"] == 2
    assert {r["replayed_execution_id"] for r in body["replayed"]} == {world.ids["fail"], world.ids["old"]}
    assert body["skipped"] == []
    # Oldest first, so a contact's changes are replayed in the order they happened.
    assert [r["replayed_execution_id"] for r in body["replayed"]] == [world.ids["old"], world.ids["fail"]]

    held = (await world.client.post("/api/replay", params={"instance": world.instance, "status": "held"})).json()
    assert held["replayed"] == []
    assert [skipped["execution_id"] for skipped in held["skipped"]] == [world.ids["held"]]
    assert "source event" in held["skipped"][0]["reason"]

    too_many = await world.client.post("/api/replay", params={"instance": world.instance})
    assert too_many.status_code == 409
    assert "narrow the filters" in too_many.json()["detail"]


async def test_reading_a_record_again_does_not_duplicate_it(world: World) -> None:
    ok_records = [r for r in world.records if r.execution_id == world.ids["ok"]]
    marker = trace(uuid.uuid4().hex, world.other_instance, Stage.INGEST, TraceStatus.SUCCEEDED, at=world.now)
    await publish(world.kafka, [], [*ok_records, marker])

    async def marker_seen() -> bool:
        return (await world.client.get(f"/api/executions/{marker.execution_id}")).status_code == 200

    await eventually(marker_seen, timeout=30)
    detail = (await world.client.get(f"/api/executions/{world.ids['ok']}")).json()
    assert detail["execution"]["record_count"] == 3
    assert len(detail["steps"]) == 3


async def test_the_store_can_be_rebuilt_from_the_topic(world: World, tmp_path: Path) -> None:
    settings = world.settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'rebuilt.db'}"})
    stored = await rebuild(settings)
    assert stored >= len(world.records)
    rebuilt = TraceStore(settings.database_url)
    try:
        for name in ("ok", "fail", "retry", "held", "pending", "old"):
            original = (await world.client.get(f"/api/executions/{world.ids[name]}")).json()["execution"]
            again = rebuilt.execution(world.ids[name])
            assert again is not None
            assert (again.status.value, again.record_count) == (original["status"], original["record_count"])
    finally:
        rebuilt.close()


async def test_health_and_metrics(world: World) -> None:
    assert (await world.client.get("/health/live")).status_code == 200
    ready = await world.client.get("/health/ready")
    assert ready.status_code == 200 and ready.json() == {"kafka": "ok"}
    metrics = (await world.client.get("/metrics")).text
    stored = next(
        line for line in metrics.splitlines() if line.startswith("tandem_console_trace_records_stored_total ")
    )
    assert float(stored.split()[-1]) >= len(world.records)
    assert 'tandem_end_to_end_latency_seconds_count{flow="accessplanit_to_mailchimp"}' in metrics
    lag = next(line for line in metrics.splitlines() if line.startswith('tandem_consumer_lag{service="console"'))
    assert float(lag.split()[-1]) >= 0


# --- the pages, over the same store ------------------------------------------------------------------------------


async def test_executions_page_filters_and_shows_dots(world: World) -> None:
    page = await world.client.get("/executions", params={"instance": world.instance, "status": "failed"})
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    for name in ("fail", "old"):
        assert f'data-execution-id="{world.ids[name]}"' in page.text
    assert f'data-execution-id="{world.ids["ok"]}"' not in page.text
    assert 'data-status="failed"' in page.text and 'data-status="succeeded"' not in page.text

    bad = await world.client.get("/executions", params={"status": "green"})
    assert bad.status_code == 422
    assert "status" in bad.text and "text/html" in bad.headers["content-type"]


async def test_execution_page_logs_show_only_errors(world: World) -> None:
    all_lines = await world.client.get(f"/executions/{world.ids['fail']}", params={"tab": "logs"})
    assert "User has no email address" in all_lines.text
    assert "ingest succeeded" in all_lines.text  # the ingest step's info line
    assert 'class="level-info"' in all_lines.text
    errors = await world.client.get(f"/executions/{world.ids['fail']}", params={"tab": "logs", "errors": "1"})
    assert "User has no email address" in errors.text
    assert "ingest succeeded" not in errors.text
    assert 'class="level-info"' not in errors.text
    outputs = await world.client.get(f"/executions/{world.ids['fail']}")
    assert "Step Outputs" in outputs.text and "data out" in outputs.text
    assert (await world.client.get("/executions/nope")).status_code == 404


async def test_summary_page_pauses_and_enables_with_forms(world: World) -> None:
    summary_url = f"/instances/{world.other_instance}"
    before = (await world.client.get(f"/api{summary_url}")).json()["version"]
    foreign = await world.client.post(f"{summary_url}/pause", headers={"origin": "http://elsewhere.example"})
    assert foreign.status_code == 403
    assert (await world.client.get(f"/api{summary_url}")).json()["version"] == before

    paused = await world.client.post(f"{summary_url}/pause", headers={"origin": "http://console.test"})
    assert paused.status_code == 303 and paused.headers["location"] == summary_url
    page = await world.client.get(summary_url)
    assert "Paused" in page.text and "Enable the instance" in page.text

    resumed = await world.client.post(
        f"{summary_url}/resume", data={"discard_buffered": "1"}, headers={"origin": "http://console.test"}
    )
    assert resumed.status_code == 303
    assert "Pause the instance" in (await world.client.get(summary_url)).text
    on_topic = (await read_instances(connect(world.kafka)))[world.other_instance]
    assert (on_topic.paused, on_topic.version, on_topic.discard_held_on_resume) == (False, before + 2, True)


async def test_contact_and_instances_pages(world: World) -> None:
    contact = await world.client.get("/contacts", params={"accessplanit_user_id": "2002"})
    assert contact.status_code == 200 and world.ids["fail"] in contact.text
    instances = await world.client.get("/instances")
    assert world.instance in instances.text
    assert (await world.client.get("/instances/nope")).status_code == 404


async def test_replay_these_from_the_list(world: World) -> None:
    response = await world.client.post("/executions/replay", params={"instance": world.instance, "status": "held"})
    assert response.status_code == 303
    assert "replayed=0" in response.headers["location"] and "skipped=1" in response.headers["location"]
    page = await world.client.get(response.headers["location"])
    assert "0 executions replayed; 1 skipped" in page.text


async def test_forgetting_a_contact_erases_it_and_is_acknowledged(world: World) -> None:
    """Last in the file: it erases the other instance's contact for good (the store keeps a tombstone)."""
    response = await world.client.post(
        "/api/contacts/forget", json={"email": "Other@Example.com", "instance_id": world.other_instance}
    )
    assert response.status_code == 202, response.text
    request_id = response.json()["request_id"]

    async def erased_and_acknowledged() -> bool:
        params = {"instance": world.other_instance, "limit": 100}
        items = (await world.client.get("/api/executions", params=params)).json()["items"]
        listed = {e["execution_id"] for e in items}
        return request_id in listed and world.ids["other"] not in listed

    await eventually(erased_and_acknowledged, timeout=60)
    detail = (await world.client.get(f"/api/executions/{request_id}")).json()
    assert [s["summary"] for s in detail["steps"]] == [
        f"Contact erased by the console ({world.other_instance}): 1 execution(s)"
    ]
    assert "other@example.com" not in str(detail).lower()
    bad = await world.client.post("/api/contacts/forget", json={"email": ""})
    assert bad.status_code in (400, 422)
