"""An import in accessplanit: unsigned deliveries beyond the instance's re-read allowance are answered at once and
their users read by the catch-up poll, a page per request, from the simulator (Redis: the suite's own)."""

from __future__ import annotations

import httpx
import orjson
from component.accessplanit.accessplanit_fixtures import RecordingPublisher, create_user, instance, requests
from component.simulators.accessplanit.accessplanit_testkit import SimServer

from fakes.producer import InMemoryProducer
from tandem_ingest.bootstrap import bootstrap
from tandem_ingest.entrypoint import serve
from tandem_ingest.settings import IngestSettings
from tandem_shared.contracts import Stage, Trigger
from tandem_shared.contracts.topics import TRACE
from tandem_shared.instances import StaticInstanceRegistry

ALLOWANCE = 3
IMPORTED = 12


def delivery(user_id: str) -> bytes:
    return orjson.dumps({"Module": "User", "Event": "updated", "Data": {"ID": user_id}})


async def test_an_import_beyond_the_reread_allowance_is_answered_at_once_and_read_a_page_at_a_time(
    ap_server: SimServer,
    sim: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    redis: object,
    redis_db_url: str,
) -> None:
    publisher = RecordingPublisher()
    unsigned = instance(ap_server.base_url, instance_id="unsigned", signed=False)
    settings = IngestSettings(
        kafka_bootstrap_servers="127.0.0.1:9",
        redis_url=redis_db_url,
        log_json=False,
        accessplanit_rereads_per_minute=ALLOWANCE,
        accessplanit_reread_window_s=0.0,
        poll_overlap_s=0.0,
        poll_clock_skew_s=0.0,
    )
    producer = InMemoryProducer()
    ingest = bootstrap(settings, registry=StaticInstanceRegistry([unsigned]), publisher=publisher, producer=producer)
    await ingest.poller.poll_all()  # the cursor starts before the import
    imported = [await create_user(admin, Email=f"import{n}@example.com") for n in range(IMPORTED)]
    reads_before = await requests(sim, "GET", "/api/v2/User")

    transport = httpx.ASGITransport(app=serve(ingest))
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
        answers = [
            await client.put("/webhooks/accessplanit/unsigned", content=delivery(user["ID"])) for user in imported
        ]
    assert [a.status_code for a in answers] == [202] * IMPORTED
    deferred = [a.json() for a in answers if a.json().get("deferred")]
    assert len(deferred) == IMPORTED - ALLOWANCE, "beyond the allowance, answered without a read"
    assert len(publisher.published) == ALLOWANCE
    deferral_traces = [s for s in producer.sent if s.topic == TRACE]
    assert len(deferral_traces) == IMPORTED - ALLOWANCE, "each deferral is an execution the console shows"

    [report] = await ingest.poller.poll_all()
    assert report.deferred_settled == IMPORTED - ALLOWANCE and report.read_alone == 0
    assert await requests(sim, "GET", "/api/v2/User") == reads_before + ALLOWANCE + 1, "one page for the rest"
    assert sorted(e.identity.accessplanit_user_id for e in publisher.events()) == sorted(u["ID"] for u in imported)
    polled = [p for p in publisher.published if p.stage is Stage.POLLER]
    assert all(p.event.trigger is Trigger.POLL for p in polled) and len(polled) == IMPORTED - ALLOWANCE
    assert await ingest.redis.zcard(f"tandem:poller:{unsigned.id}:deferred") == 0
    await ingest.redis.aclose()
