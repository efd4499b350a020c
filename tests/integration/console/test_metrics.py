"""Every service serves Prometheus metrics at /metrics, and the counters move with the traffic they count."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.console_access import bearer
from support.stack import RunningStack, running_stack
from support.waiting import eventually
from tandem_devstack.demo import accessplanit_webhook_url
from tandem_devstack.stack import DEMO_ACCESSPLANIT_ADMIN_KEY

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    tmp: Path = tmp_path_factory.mktemp("metrics")
    with running_stack(kafka_bootstrap, redis_url, tmp) as running:
        yield running


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus' text format (0 when the series does not exist yet)."""
    for line in text.splitlines():
        match = re.fullmatch(rf"{re.escape(name)}(?:\{{(.*)\}})? (\S+)", line)
        if match is None:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(2))
    return 0.0


async def test_services_count_what_they_do(stack: RunningStack) -> None:
    async with httpx.AsyncClient(timeout=10) as client:

        async def metrics(service: str) -> str:
            # The console's metrics need a token (its NetworkPolicy admits the monitoring namespace for them).
            headers = bearer("metrics") if service == "console" else {}
            response = await client.get(f"{stack.url(service)}/metrics", headers=headers)
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/plain")
            return response.text

        for service in ("ingest", "mapper", "writer", "console"):
            assert (await client.get(f"{stack.url(service)}/health/ready")).status_code in (200, 204)

        # The demo instance takes accessplanit's default, unsigned path: a delivery naming no user is refused.
        unnamed = await client.post(accessplanit_webhook_url(stack.url("ingest"), stack.instance.id), json={"Data": {}})
        assert unnamed.status_code == 400
        assert sample(await metrics("ingest"), "tandem_ingest_events_rejected_total", status="400") >= 1

        created = await client.post(
            f"{stack.url('accessplanit_sim')}/api/v2/User",
            headers={"Authorization": f"Bearer {DEMO_ACCESSPLANIT_ADMIN_KEY}"},
            json={"Forenames": "Count", "Surname": "Me", "Email": "count.me@example.com", "MainCompanyID": "2"},
        )
        assert created.status_code in (200, 201), created.text

        async def written() -> str | None:
            text = await metrics("writer")
            return text if sample(text, "tandem_writer_outcomes_total", status="succeeded") >= 1 else None

        await eventually(written, timeout=60)
        assert sample(await metrics("ingest"), "tandem_ingest_events_accepted_total", source="accessplanit") >= 1
        assert sample(await metrics("mapper"), "tandem_mapper_decisions_total", status="succeeded") >= 1

        async def measured() -> str | None:
            text = await metrics("console")
            flow = "accessplanit_to_mailchimp"
            return text if sample(text, "tandem_end_to_end_latency_seconds_count", flow=flow) >= 1 else None

        console = await eventually(measured, timeout=60)
        assert sample(console, "tandem_console_trace_records_stored_total") >= 3
        assert sample(console, "tandem_end_to_end_latency_seconds_sum", flow="accessplanit_to_mailchimp") > 0
