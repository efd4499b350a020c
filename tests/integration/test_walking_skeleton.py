"""One user created in accessplanit reaches the Mailchimp audience through ingest → mapper → writer on real Kafka."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.console_access import bearer
from support.sims import Sims
from support.stack import RunningStack, running_stack
from support.topics import wait_for_records
from support.waiting import eventually
from tandem_cli.common import EXIT_OK
from tandem_cli.main import main
from tandem_devstack.stack import DEMO_ACCESSPLANIT_ADMIN_KEY, DEMO_MAILCHIMP_API_KEY, DEMO_MAILCHIMP_AUDIENCE
from tandem_shared.contact_hash import contact_hash
from tandem_shared.contracts import ERASURE_SERVICES, Stage, System, TraceRecord, TraceStatus, subscriber_hash
from tandem_shared.contracts.topics import CHANGES, COMMANDS, TRACE
from tandem_shared.redis.client import connect_url
from tandem_shared.redis.keys import contact_slot_pattern, state_key, user_email_key

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    tmp: Path = tmp_path_factory.mktemp("skeleton")
    with running_stack(kafka_bootstrap, redis_url, tmp) as running:
        yield running


async def test_user_created_in_accessplanit_appears_in_mailchimp(stack: RunningStack) -> None:
    email = f"ada.{uuid.uuid4().hex[:8]}@example.com"
    async with httpx.AsyncClient(timeout=10) as client:
        sims = Sims(client, stack)
        user_id = await sims.create_user(email)
        found = await eventually(lambda: sims.member(email), timeout=30)

    assert found["email_address"] == email
    assert found["status"] == "subscribed"
    assert found["merge_fields"]["FNAME"] == "Ada"  # type: ignore[index]
    assert found["merge_fields"]["LNAME"] == "Lovelace"  # type: ignore[index]

    def ours(record: TraceRecord) -> bool:
        return record.instance_id == stack.instance.id and record.accessplanit_user_id == user_id

    records = await wait_for_records(
        stack.kafka,
        TRACE,
        TraceRecord,
        where=ours,
        until=lambda found: {r.stage for r in found} >= {Stage.INGEST, Stage.MAPPER, Stage.WRITER},
    )
    by_stage = {r.stage: r for r in records}
    assert {r.execution_id for r in records} == {by_stage[Stage.INGEST].execution_id}
    assert all(r.status is TraceStatus.SUCCEEDED for r in records), [(r.stage, r.summary) for r in records]
    assert by_stage[Stage.WRITER].output.data_out is not None
    assert by_stage[Stage.WRITER].output.data_out["email_address"] == email
    # Every stage counts what it consumed and published (the dashboard's events in/out, by stage and topic).
    counted = {
        ("ingest", "tandem_events_out_total", CHANGES),
        ("mapper", "tandem_events_in_total", CHANGES),
        ("mapper", "tandem_events_out_total", COMMANDS),
        ("writer", "tandem_events_in_total", COMMANDS),
        ("writer", "tandem_events_out_total", TRACE),
    }
    async with httpx.AsyncClient(timeout=10) as client:
        for service, metric, topic in counted:
            exported = (await client.get(f"{stack.url(service)}/metrics")).text
            assert counter_value(exported, metric, service, topic) >= 1, (service, metric, topic)


def counter_value(exported: str, metric: str, service: str, topic: str) -> float:
    wanted = f'{metric}{{service="{service}",topic="{topic}"}} '
    return sum(float(line.removeprefix(wanted)) for line in exported.splitlines() if line.startswith(wanted))


async def test_user_without_email_fails_with_the_reason_in_the_trace(stack: RunningStack) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        created = await client.post(
            f"{stack.url('accessplanit_sim')}/api/v2/User",
            headers={"Authorization": f"Bearer {DEMO_ACCESSPLANIT_ADMIN_KEY}"},
            json={"Forenames": "No", "Surname": "Email", "MainCompanyID": "2"},
        )
        assert created.status_code in (200, 201), created.text
        user_id = str(created.json()["ID"])

    records = await wait_for_records(
        stack.kafka,
        TRACE,
        TraceRecord,
        where=lambda r: r.instance_id == stack.instance.id and r.accessplanit_user_id == user_id,
        until=lambda found: any(r.stage is Stage.MAPPER for r in found),
    )
    mapper = next(r for r in records if r.stage is Stage.MAPPER)
    assert mapper.status is TraceStatus.FAILED
    assert mapper.error is not None and mapper.error.message == "User has no email address"
    assert mapper.error.permanent
    assert not any(r.stage is Stage.WRITER for r in records)


async def test_an_accessplanit_edit_of_an_api_unsubscribed_contact_leaves_it_unsubscribed(stack: RunningStack) -> None:
    # Mailchimp lets an API call resubscribe a member the API unsubscribed (mailchimp-api.md §10); Tandem's writes
    # carry `status_if_new` only, so an edit in accessplanit updates the profile and never the consent.
    email = f"quit.{uuid.uuid4().hex[:8]}@example.com"
    admin = {"Authorization": f"Bearer {DEMO_ACCESSPLANIT_ADMIN_KEY}"}
    mc_auth = ("any", DEMO_MAILCHIMP_API_KEY)
    ap = f"{stack.url('accessplanit_sim')}/api/v2/User"
    member_url = f"{stack.url('mailchimp_sim')}/3.0/lists/{DEMO_MAILCHIMP_AUDIENCE}/members/{subscriber_hash(email)}"
    async with httpx.AsyncClient(timeout=10) as client:

        async def member_with(first_name: str) -> dict[str, object] | None:
            response = await client.get(member_url, auth=mc_auth)
            found: dict[str, object] | None = response.json() if response.status_code == 200 else None
            fields = found.get("merge_fields") if found else None
            return found if isinstance(fields, dict) and fields.get("FNAME") == first_name else None

        created = await client.post(
            ap, headers=admin, json={"Forenames": "Ada", "Surname": "Quit", "Email": email, "MainCompanyID": "2"}
        )
        assert created.status_code in (200, 201), created.text
        await eventually(lambda: member_with("Ada"), timeout=30)
        unsubscribed = await client.patch(member_url, auth=mc_auth, json={"status": "unsubscribed"})
        assert unsubscribed.json()["status"] == "unsubscribed"

        edited = await client.put(f"{ap}/{created.json()['ID']}", headers=admin, json={"Forenames": "Augusta"})
        assert edited.status_code == 200, edited.text
        found = await eventually(lambda: member_with("Augusta"), timeout=30)

    assert found["status"] == "unsubscribed"


async def test_a_forgotten_contact_leaves_every_store_and_every_service_acknowledges(
    stack: RunningStack, capsys: pytest.CaptureFixture[str]
) -> None:
    email = f"grace.{uuid.uuid4().hex[:8]}@example.com"
    async with httpx.AsyncClient(timeout=10) as client:
        created = await client.post(
            f"{stack.url('accessplanit_sim')}/api/v2/User",
            headers={"Authorization": f"Bearer {DEMO_ACCESSPLANIT_ADMIN_KEY}"},
            json={"Forenames": "Grace", "Surname": "Hopper", "Email": email, "MainCompanyID": "2"},
        )
        assert created.status_code in (200, 201), created.text
        user_id = str(created.json()["ID"])
    redis = connect_url(stack.redis)
    console = httpx.AsyncClient(base_url=stack.url("console"), timeout=10, headers=bearer("viewer"))
    instance_id = stack.instance.id
    try:
        synced = [state_key(instance_id, system, email) for system in System]

        async def written() -> bool:
            return all([await redis.exists(key) for key in synced])

        async def contact_keys() -> list[str]:
            """Every Redis key that names the contact: by keyed hash, or by its accessplanit user id."""
            patterns = [f"*{contact_hash(email)}*", contact_slot_pattern(instance_id, f"ap:{user_id}")]
            return [key for pattern in patterns async for key in redis.scan_iter(match=pattern, count=1000)]

        await eventually(written, timeout=30)
        assert await contact_keys()  # sync state, and the writer's markers of the Mailchimp write

        async def executions() -> list[dict[str, object]]:
            answer = await console.get("/api/executions", params={"email": email, "instance": instance_id})
            answer.raise_for_status()
            items: list[dict[str, object]] = answer.json()["items"]
            return items

        await eventually(executions, timeout=30)  # the console's store holds the contact's executions

        args = ["contacts", "forget", email, "--instance", instance_id, "--bootstrap-servers", stack.kafka]
        code = await asyncio.to_thread(main, [*args, "--wait", "60"])

        out = capsys.readouterr().out
        assert code == EXIT_OK, out
        assert all(f"  {service}: acknowledged" in out for service in ERASURE_SERVICES), out
        assert "every service acknowledged" in out
        assert [key for key in await contact_keys() if not key.endswith(":lock")] == []
        assert email not in (await redis.hgetall(user_email_key(instance_id))).values()
        assert await executions() == []  # acknowledged by the console: its store no longer holds them
    finally:
        await console.aclose()
        await redis.aclose()
