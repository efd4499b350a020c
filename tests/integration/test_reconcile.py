"""Reconciliation on the real broker: `tandem reconcile` requests a run, the writer executes it, the pipeline repairs.

No ingest runs here: no webhook is registered and no poller runs, so every edit the tests make in a simulator is
behind Tandem's back, and only a reconciliation can find it.
"""

from __future__ import annotations

import asyncio
import csv
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from support.console_access import bearer
from support.stack import RunningStack, running_stack
from support.waiting import eventually
from tandem_cli.common import EXIT_OK, EXIT_USAGE
from tandem_cli.main import main
from tandem_devstack.stack import DEMO_ACCESSPLANIT_ADMIN_KEY, DEMO_MAILCHIMP_API_KEY, DEMO_MAILCHIMP_AUDIENCE
from tandem_shared.contact_hash import contact_hash
from tandem_shared.contracts import (
    ChangeEvent,
    ChangeKind,
    ContactIdentity,
    FieldMapping,
    System,
    Trigger,
    subscriber_hash,
    utcnow,
)
from tandem_shared.contracts.envelopes import change_envelope
from tandem_shared.contracts.instances import ReconcileSchedule
from tandem_shared.contracts.reconcile import ReconcileProgress, ReconcileRequest, ReportRow, RunStatus
from tandem_shared.instance_store import put_instance
from tandem_shared.kafka import KafkaConnection, KafkaProducer
from tandem_shared.kafka.producer import send_envelope
from tandem_shared.reconcile.follow import follow_run
from tandem_shared.reconcile.tombstones import Tombstones
from tandem_shared.redis.client import connect_url
from tandem_shared.redis.keys import reconcile_checkpoint_key, tombstones_key

pytestmark = pytest.mark.integration

N = 120  # contacts only in accessplanit, and as many only in Mailchimp
TAG = uuid.uuid4().hex[:6]
REPORTED_ONLY = {
    "duplicate_accessplanit",
    "mailchimp_unsubscribed",
    "mailchimp_cleaned",
    "mailchimp_archived",
    "accessplanit_no_email",
    "mailchimp_missing_names",
    "tombstoned",
}


def ap_email(i: int) -> str:
    return f"ap{i}.{TAG}@example.com"


def mc_email(i: int) -> str:
    return f"mc{i}.{TAG}@example.com"


DUPLICATE = f"dup.{TAG}@example.com"
QUIT = f"quit.{TAG}@example.com"
NAMELESS = f"nameless.{TAG}@example.com"
DELETED = f"deleted.{TAG}@example.com"


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with running_stack(
        kafka_bootstrap,
        redis_url,
        tmp_path_factory.mktemp("reconcile"),
        services=["mailchimp-sim", "accessplanit-sim", "mapper", "writer", "console"],
        extra_env={"TANDEM_WRITER_RECONCILE_TICK_S": "0.5", "TANDEM_WRITER_CONTACT_WRITE_INTERVAL_S": "0"},
    ) as running:
        yield running


@pytest.fixture(scope="module")
async def ap(stack: RunningStack) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {DEMO_ACCESSPLANIT_ADMIN_KEY}"}
    base = f"{stack.url('accessplanit_sim')}/api/v2"
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
async def mc(stack: RunningStack) -> AsyncIterator[httpx.AsyncClient]:
    base = f"{stack.url('mailchimp_sim')}/3.0/lists/{DEMO_MAILCHIMP_AUDIENCE}"
    async with httpx.AsyncClient(base_url=base, auth=("any", DEMO_MAILCHIMP_API_KEY), timeout=30) as client:
        yield client


async def create_user(ap: httpx.AsyncClient, email: str | None, first: str, last: str) -> str:
    body: dict[str, Any] = {"Forenames": first, "Surname": last, "MainCompanyID": "2"}
    if email is not None:
        body["Email"] = email
    created = await ap.post("/User", json=body)
    assert created.status_code in (200, 201), created.text
    return str(created.json()["ID"])


async def put_member(mc: httpx.AsyncClient, email: str, first: str, last: str, status: str = "subscribed") -> None:
    body = {"email_address": email, "status_if_new": status, "merge_fields": {"FNAME": first, "LNAME": last}}
    answer = await mc.put(f"/members/{subscriber_hash(email)}", json=body)
    assert answer.status_code == 200, answer.text


async def run(stack: RunningStack, **options: Any) -> tuple[ReconcileProgress, dict[str, ReportRow]]:
    request = ReconcileRequest(
        run_id=uuid.uuid4().hex[:16], instance_id=stack.instance.id, requested_at=utcnow(), **options
    )
    progress, rows = await follow_run(
        KafkaConnection(stack.kafka), request, on_progress=lambda _: None, start_timeout_s=120
    )
    assert progress is not None and progress.status is RunStatus.DONE, progress
    return progress, {f"{r.email or r.accessplanit_user_ids[0]}".lower(): r for r in rows}


def drift(progress: ReconcileProgress) -> dict[str, int]:
    return {k: v for k, v in progress.counts.items() if k not in REPORTED_ONLY and k != "equal" and v}


@pytest.fixture(scope="module")
async def seeded(stack: RunningStack, ap: httpx.AsyncClient, mc: httpx.AsyncClient, redis_url: str) -> None:
    gate = asyncio.Semaphore(10)

    async def bounded(call: Any) -> Any:
        async with gate:
            return await call

    await asyncio.gather(*(bounded(create_user(ap, ap_email(i), f"Ada{i}", "Lovelace")) for i in range(N)))
    await asyncio.gather(*(bounded(put_member(mc, mc_email(i), f"Grace{i}", "Hopper")) for i in range(N)))
    await create_user(ap, DUPLICATE, "One", "Dup")
    await create_user(ap, DUPLICATE.upper(), "Two", "Dup")
    await create_user(ap, None, "No", "Address")
    await create_user(ap, QUIT, "Quit", "InAccessplanit")
    await put_member(mc, QUIT, "Quit", "Changed")
    (await mc.patch(f"/members/{subscriber_hash(QUIT)}", json={"status": "unsubscribed"})).raise_for_status()
    await put_member(mc, NAMELESS, "", "")
    await put_member(mc, DELETED, "Gone", "Away")
    # Tandem saw this contact's accessplanit user deleted: the Mailchimp member must not bring it back.
    redis = connect_url(redis_url)
    try:
        await Tombstones(redis).record(stack.instance.id, System.ACCESSPLANIT, DELETED)
    finally:
        await redis.aclose()


async def users_with(ap: httpx.AsyncClient, email: str) -> list[dict[str, Any]]:
    found = await ap.get("/User", params={"$filter": f"Email eq '{email}'"})
    found.raise_for_status()
    results: list[dict[str, Any]] = found.json()["results"]
    return results


async def member(mc: httpx.AsyncClient, email: str) -> dict[str, Any] | None:
    found = await mc.get(f"/members/{subscriber_hash(email)}")
    return found.json() if found.status_code == 200 else None


@pytest.fixture
async def backfilled(stack: RunningStack, seeded: None, ap: httpx.AsyncClient, mc: httpx.AsyncClient) -> None:
    """Both sides hold every contact (after the backfill test, or a repair run of its own when run alone)."""

    async def done() -> bool:
        return await member(mc, ap_email(N - 1)) is not None and len(await users_with(ap, mc_email(N - 1))) == 1

    if not await done():
        await run(stack, repair=True)
        await eventually(done, timeout=180, interval=1.0)


async def test_a_dry_run_reports_every_case_and_writes_nothing(
    stack: RunningStack, seeded: None, ap: httpx.AsyncClient, mc: httpx.AsyncClient
) -> None:
    progress, rows = await run(stack)
    assert rows[ap_email(0)].category == "only_accessplanit"
    assert rows[ap_email(0)].action == "would repair: → Mailchimp"
    assert rows[mc_email(0)].category == "only_mailchimp"
    assert rows[DUPLICATE].category == "duplicate_accessplanit"
    assert len(rows[DUPLICATE].accessplanit_user_ids) == 2
    assert rows[QUIT].category == "mailchimp_unsubscribed"
    assert rows[NAMELESS].category == "mailchimp_missing_names"
    assert rows[DELETED].category == "tombstoned"
    assert any(r.category == "accessplanit_no_email" for r in rows.values())
    assert progress.counts["only_accessplanit"] >= N and progress.counts["only_mailchimp"] >= N
    # Paged at 1000 with only the mapped fields: a handful of requests for a few hundred contacts.
    assert progress.requests["accessplanit"] <= 2 and progress.requests["mailchimp"] <= 3
    assert await member(mc, ap_email(0)) is None
    assert await users_with(ap, mc_email(0)) == []


async def test_a_repair_run_backfills_both_ways_and_a_second_run_finds_no_drift(
    stack: RunningStack, seeded: None, ap: httpx.AsyncClient, mc: httpx.AsyncClient
) -> None:
    progress, _ = await run(stack, repair=True)
    assert progress.published >= 2 * N

    async def backfilled() -> bool:
        last_ap, last_mc = await member(mc, ap_email(N - 1)), await users_with(ap, mc_email(N - 1))
        return last_ap is not None and len(last_mc) == 1

    await eventually(backfilled, timeout=180, interval=1.0)

    async def settled() -> ReconcileProgress | None:
        again, _ = await run(stack)
        return again if not drift(again) else None

    again = await eventually(settled, timeout=180, interval=2.0)
    assert again.counts["equal"] >= 2 * N
    created = (await users_with(ap, mc_email(0)))[0]
    assert (created["Forenames"], created["Surname"]) == ("Grace0", "Hopper")
    assert (await member(mc, ap_email(0)) or {})["merge_fields"]["FNAME"] == "Ada0"
    # Reported, never written: no user for the unsubscribed, nameless or deleted contacts; no resubscription.
    assert await users_with(ap, NAMELESS) == [] and await users_with(ap, DELETED) == []
    assert (await member(mc, QUIT) or {})["status"] == "unsubscribed"
    assert await member(mc, DUPLICATE) is None


async def test_drift_behind_tandems_back_is_reported_then_repaired(
    stack: RunningStack, backfilled: None, ap: httpx.AsyncClient, mc: httpx.AsyncClient, tmp_path: Path
) -> None:
    users = await users_with(ap, mc_email(1))
    await asyncio.sleep(1.1)  # Mailchimp's last_changed has whole seconds: the edit must be later than the write
    # A Mailchimp edit (no webhook reaches Tandem) and an accessplanit edit (no poller runs).
    edited = await mc.patch(f"/members/{subscriber_hash(mc_email(1))}", json={"merge_fields": {"FNAME": "Edited"}})
    edited.raise_for_status()
    user_id = (await users_with(ap, ap_email(1)))[0]["ID"]
    (await ap.put(f"/User/{user_id}", json={"Surname": "Byron"})).raise_for_status()
    assert users  # the Mailchimp contact had been backfilled into accessplanit

    report = tmp_path / "drift.jsonl"
    argv = ["reconcile", stack.instance.id, "--dry-run", "--report", str(report)]
    code = await asyncio.to_thread(main, [*argv, "--bootstrap-servers", stack.kafka, "--timeout", "120"])
    assert code == EXIT_OK
    rows = {r["email"]: r for r in map(json.loads, report.read_text().splitlines())}
    assert rows[mc_email(1)]["category"] == "different"
    assert rows[mc_email(1)]["differences"] == {"FNAME ⇄ Forenames": {"accessplanit": "Grace1", "mailchimp": "Edited"}}
    assert rows[ap_email(1)]["differences"] == {"LNAME ⇄ Surname": {"accessplanit": "Byron", "mailchimp": "Lovelace"}}

    await run(stack, repair=True)

    async def repaired() -> bool:
        moved = await users_with(ap, mc_email(1))
        written = await member(mc, ap_email(1))
        return bool(moved) and moved[0]["Forenames"] == "Edited" and (written or {})["merge_fields"]["LNAME"] == "Byron"

    await eventually(repaired, timeout=120, interval=1.0)
    again, rows_after = await run(stack)
    assert drift(again) == {}
    assert mc_email(1) not in rows_after and ap_email(1) not in rows_after


async def test_a_deletion_tandem_sees_keeps_a_tombstone_that_stops_re_creation(
    stack: RunningStack, seeded: None, mc: httpx.AsyncClient, redis_url: str
) -> None:
    # The member's accessplanit user is removed; its deletion reaches the mapper as ingest would publish it.
    gone = f"removed.{TAG}@example.com"
    await put_member(mc, gone, "Removed", "User")
    event = ChangeEvent(
        event_id=uuid.uuid4().hex,
        execution_id=uuid.uuid4().hex,
        instance_id=stack.instance.id,
        source=System.ACCESSPLANIT,
        kind=ChangeKind.DELETED,
        identity=ContactIdentity(accessplanit_user_id="999999", email=gone),
        fields={"ID": "999999", "Email": gone},
        occurred_at=utcnow(),
        received_at=utcnow(),
        trigger=Trigger.WEBHOOK,
    )
    producer = KafkaProducer(KafkaConnection(stack.kafka))
    await producer.start()
    try:
        await (await send_envelope(producer, change_envelope(event)))
    finally:
        await producer.stop()
    redis = connect_url(redis_url)
    try:

        async def tombstoned() -> bool:
            kept = await redis.smembers(tombstones_key(stack.instance.id, System.ACCESSPLANIT))
            return contact_hash(gone) in kept

        await eventually(tombstoned, timeout=60)
    finally:
        await redis.aclose()
    _, rows = await run(stack, repair=True)
    assert rows[gone].category == "tombstoned"
    assert rows[gone].action == "reported only: deleted in accessplanit, not created again"


async def test_a_second_request_while_a_run_holds_the_instance_is_refused(
    stack: RunningStack, seeded: None, redis_url: str
) -> None:
    # A run of the instance in progress, as its checkpoint shows it (kept out of the set of runs to resume, so
    # no writer starts it).
    redis = connect_url(redis_url)
    checkpoint = reconcile_checkpoint_key(stack.instance.id)
    try:
        await redis.hset(checkpoint, mapping={"run_id": "running-one", "after": ""})
        request = ReconcileRequest(run_id=uuid.uuid4().hex[:16], instance_id=stack.instance.id, requested_at=utcnow())
        progress, _ = await follow_run(
            KafkaConnection(stack.kafka), request, on_progress=lambda _: None, start_timeout_s=120
        )
    finally:
        await redis.delete(checkpoint)
        await redis.aclose()
    assert progress is not None and progress.status is RunStatus.REFUSED
    assert progress.message == f"run running-one of instance {stack.instance.id} is in progress"


async def test_the_console_button_requests_a_run_and_the_instance_page_shows_its_outcome(
    stack: RunningStack, seeded: None
) -> None:
    console = stack.url("console")
    async with httpx.AsyncClient(base_url=console, timeout=30, headers=bearer("operator")) as client:
        requested = await client.post(f"/api/instances/{stack.instance.id}/reconcile")
        assert requested.status_code == 202, requested.text
        run_id = requested.json()["run_id"]

        async def finished() -> dict[str, Any] | None:
            latest = (await client.get(f"/api/instances/{stack.instance.id}/reconcile")).json()
            return latest if latest and latest["run_id"] == run_id and latest["status"] == "done" else None

        latest = await eventually(finished, timeout=120, interval=0.5)
        assert latest["dry_run"] is True and latest["counts"].get("equal", 0) > 0, latest["counts"]
        page = await client.get(f"/instances/{stack.instance.id}")
        assert run_id in page.text and "Reconcile now" in page.text
        missing = await client.post("/api/instances/no-such-instance/reconcile")
        assert missing.status_code == 404


async def test_a_shadow_run_compares_under_a_candidate_configuration_and_never_repairs(
    stack: RunningStack, backfilled: None, tmp_path: Path
) -> None:
    # A mistaken candidate: first names mapped to accessplanit's surnames. The operator sees what it would write.
    mappings = [m for m in stack.instance.mappings if m.mailchimp != "FNAME"]
    candidate = stack.instance.model_copy(
        update={"mappings": [*mappings, FieldMapping(mailchimp="FNAME", accessplanit="Surname")]}
    )
    path = tmp_path / "candidate.yaml"
    path.write_text(yaml.safe_dump(candidate.model_dump(mode="json")), encoding="utf-8")
    report = tmp_path / "shadow.csv"
    argv = ["reconcile", stack.instance.id, "--config", str(path), "--report", str(report)]
    code = await asyncio.to_thread(main, [*argv, "--bootstrap-servers", stack.kafka, "--timeout", "120"])
    assert code == EXIT_OK
    rows = {r["email"]: r for r in csv.DictReader(report.open(encoding="utf-8"))}
    assert rows[ap_email(3)]["category"] == "different"
    assert json.loads(rows[ap_email(3)]["differences"]) == {
        "FNAME ⇄ Surname": {"accessplanit": "Lovelace", "mailchimp": "Ada3"}
    }
    refused = await asyncio.to_thread(main, [*argv, "--repair", "--bootstrap-servers", stack.kafka])
    assert refused == EXIT_USAGE


async def test_an_instance_schedule_starts_runs_on_its_own(stack: RunningStack, seeded: None) -> None:
    scheduled = stack.instance.model_copy(
        update={"reconcile": ReconcileSchedule(every="1h"), "version": stack.instance.version + 1}
    )
    await put_instance(KafkaConnection(stack.kafka), scheduled)
    try:
        async with httpx.AsyncClient(base_url=stack.url("console"), timeout=30, headers=bearer("viewer")) as client:

            async def scheduled_run() -> dict[str, Any] | None:
                latest = (await client.get(f"/api/instances/{stack.instance.id}/reconcile")).json()
                started = latest and latest["run_id"].startswith("sched-") and latest["status"] == "done"
                return latest if started else None

            latest = await eventually(scheduled_run, timeout=120, interval=0.5)
            metrics = (await client.get(f"{stack.url('writer')}/metrics")).text
        assert latest["dry_run"] is True
        assert 'tandem_reconcile_runs_total{status="done"}' in metrics
        assert 'tandem_reconcile_last_drift{category="different"}' in metrics
    finally:
        unscheduled = stack.instance.model_copy(update={"version": stack.instance.version + 2})
        await put_instance(KafkaConnection(stack.kafka), unscheduled)


async def test_an_incremental_run_compares_only_the_contacts_changed_since(
    stack: RunningStack, backfilled: None, mc: httpx.AsyncClient
) -> None:
    since = utcnow()
    await asyncio.sleep(1.1)  # Mailchimp's last_changed has whole seconds
    edited = await mc.patch(f"/members/{subscriber_hash(mc_email(5))}", json={"merge_fields": {"FNAME": "Since"}})
    edited.raise_for_status()
    progress, rows = await run(stack, since=since)
    assert rows[mc_email(5)].category == "different"
    assert rows[mc_email(5)].differences["FNAME ⇄ Forenames"] == {"accessplanit": "Grace5", "mailchimp": "Since"}
    # The changed member and its accessplanit user (read by address), not the whole audience.
    assert progress.compared <= 3 and progress.read_mailchimp <= 3
