"""A reconciliation run whose executor is SIGKILLed part-way is resumed from its checkpoint by the next one, and no
contact is created twice. The executor is the reconciler, beside a writer that leaves runs to it, as docker compose
and Kubernetes deploy them (tests/integration/test_reconcile.py runs them in the writer, as `make run` does).

accessplanit's budget is made small (40 requests per 4 s, a quarter of it the run's) so the run publishes its
repairs to accessplanit five at a time, checkpointed before each wait: it is reliably mid-way when it is killed.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from support.stack import RunningStack, running_stack
from tandem_devstack.processes import free_port
from tandem_devstack.stack import (
    DEMO_ACCESSPLANIT_ADMIN_KEY,
    DEMO_MAILCHIMP_API_KEY,
    DEMO_MAILCHIMP_AUDIENCE,
    reconciler_spec,
)
from tandem_shared.contracts import subscriber_hash, utcnow
from tandem_shared.contracts.reconcile import ReconcileProgress, ReconcileRequest, RunStatus
from tandem_shared.kafka import KafkaConnection
from tandem_shared.reconcile.follow import follow_run

pytestmark = pytest.mark.integration

N = 15
TAG = uuid.uuid4().hex[:6]


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    env = {
        "TANDEM_ACCESSPLANIT_REQUESTS_PER_WINDOW": "40",
        "TANDEM_ACCESSPLANIT_WINDOW_S": "4",
        "TANDEM_WRITER_RECONCILE_ACCESSPLANIT_SHARE": "0.25",
        "TANDEM_WRITER_RECONCILE_LEASE_S": "3",
        "TANDEM_WRITER_RECONCILE_TICK_S": "0.5",
    }
    with running_stack(
        kafka_bootstrap,
        redis_url,
        tmp_path_factory.mktemp("reconcile-resume"),
        services=["mailchimp-sim", "accessplanit-sim", "mapper", "writer"],
        extra_env=env,
        service_env={"writer": {"TANDEM_WRITER_RECONCILE_RUNS": "false"}},
    ) as running:
        running.stack.start(reconciler_spec(free_port()))
        yield running


def user_creates(stats: dict[str, Any]) -> int:
    return sum(
        r["count"]
        for r in stats["requests"]
        if r["method"] == "POST" and "user" in r["route"].lower() and str(r["status"]).startswith("2")
    )


async def test_a_killed_run_resumes_from_its_checkpoint_and_creates_no_contact_twice(stack: RunningStack) -> None:
    emails = [f"resume{i:02d}.{TAG}@example.com" for i in range(N)]
    ap_url = stack.url("accessplanit_sim")
    members = f"{stack.url('mailchimp_sim')}/3.0/lists/{DEMO_MAILCHIMP_AUDIENCE}/members"
    async with httpx.AsyncClient(timeout=30) as client:
        for email in emails:
            body = {"email_address": email, "status_if_new": "subscribed", "merge_fields": {"FNAME": "R", "LNAME": "S"}}
            answer = await client.put(
                f"{members}/{subscriber_hash(email)}", json=body, auth=("x", DEMO_MAILCHIMP_API_KEY)
            )
            assert answer.status_code == 200, answer.text
        creates_before = user_creates((await client.get(f"{ap_url}/_sim/stats")).json())

        first_checkpoint = asyncio.Event()

        def seen(progress: ReconcileProgress) -> None:
            if not progress.resumed and 0 < progress.published < N:
                first_checkpoint.set()

        request = ReconcileRequest(
            run_id=uuid.uuid4().hex[:16], instance_id=stack.instance.id, repair=True, requested_at=utcnow()
        )
        following = asyncio.create_task(
            follow_run(KafkaConnection(stack.kafka), request, on_progress=seen, start_timeout_s=120)
        )
        await asyncio.wait_for(first_checkpoint.wait(), timeout=120)
        spec = await asyncio.to_thread(stack.stack.kill, "reconciler")
        await asyncio.to_thread(stack.stack.start, spec)
        progress, _ = await asyncio.wait_for(following, timeout=240)

        assert progress is not None and progress.status is RunStatus.DONE
        assert progress.resumed
        # Executed by the restarted reconciler; the writer left it alone.
        assert "reconciliation run ended" in stack.stack.logs("reconciler")
        assert "reconciliation run ended" not in stack.stack.logs("writer")
        headers = {"Authorization": f"Bearer {DEMO_ACCESSPLANIT_ADMIN_KEY}"}

        async def every_user_once() -> bool:
            counts = []
            for email in emails:
                found = await client.get(
                    f"{ap_url}/api/v2/User", params={"$filter": f"Email eq '{email}'"}, headers=headers
                )
                counts.append(len(found.json()["results"]))
            assert max(counts) <= 1, counts  # never two users for one contact
            return min(counts) == 1

        deadline = asyncio.get_running_loop().time() + 120
        while not await every_user_once():
            assert asyncio.get_running_loop().time() < deadline, "not every contact reached accessplanit"
            await asyncio.sleep(1)
        creates = user_creates((await client.get(f"{ap_url}/_sim/stats")).json()) - creates_before
    assert creates == N
