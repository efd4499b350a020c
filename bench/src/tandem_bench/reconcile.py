"""The reconciliation benchmark (`make bench-reconcile`, `python -m tandem_bench.reconcile [--users N]`).

1. A backfill: N accessplanit users, an empty audience, `tandem reconcile --repair`: members written per second
   (first to last member written) against the batch endpoint's ideal (10 connections × 500 members ÷ the modelled
   batch latency: 150 ms a request plus the simulator's per-member cost), the accessplanit requests the run spent
   (target: at most one per 500 users read) and the writer's peak memory (the run executes in the writer).
2. A dry-run comparison of N contacts on each side: wall time and vendor requests.

No ingest runs: no webhook carries the seeded users, so only the reconciliation brings them over. The accessplanit
simulator's own rate limit is lifted for the seeding (50,000 creates would take ten hours); Tandem's budget of
its reads is unchanged. Figures go to bench/results/reconcile-<time>.{json,md} and reconcile-latest.md.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import time
import uuid
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from tandem_bench.resources import ResourceSampler, load_average, uptime_line
from tandem_bench.stack import bench_infra, bench_instance, pipeline_env
from tandem_devstack.paths import REPO_ROOT
from tandem_devstack.processes import free_port
from tandem_devstack.stack import (
    DEMO_ACCESSPLANIT_ADMIN_KEY,
    DEMO_MAILCHIMP_API_KEY,
    DEMO_MAILCHIMP_AUDIENCE,
    Ports,
    Stack,
    service_specs,
)
from tandem_shared.contracts import utcnow
from tandem_shared.contracts.reconcile import ReconcileProgress, ReconcileRequest, RunStatus
from tandem_shared.instance_store import put_instance, remove_instance
from tandem_shared.kafka import KafkaConnection
from tandem_shared.reconcile.follow import follow_run

RESULTS = REPO_ROOT / "bench" / "results"
BATCH_REQUEST_LATENCY_S = 0.150  # as the budget phase models Mailchimp
CONNECTIONS = 10
BATCH_MEMBERS = 500
SERVICES = ("mailchimp-sim", "accessplanit-sim", "mapper", "writer")


async def _seed(ap_url: str, n: int, tag: str) -> float:
    started = time.monotonic()
    headers = {"Authorization": f"Bearer {DEMO_ACCESSPLANIT_ADMIN_KEY}"}
    gate = asyncio.Semaphore(32)
    async with httpx.AsyncClient(base_url=f"{ap_url}/api/v2", headers=headers, timeout=60) as client:

        async def create(i: int) -> None:
            body = {
                "Forenames": f"Bench{i}",
                "Surname": "User",
                "Email": f"b{i}.{tag}@example.com",
                "MainCompanyID": "2",
            }
            async with gate:
                answer = await client.post("/User", json=body)
            answer.raise_for_status()

        for start in range(0, n, 5000):
            await asyncio.gather(*(create(i) for i in range(start, min(n, start + 5000))))
            print(f"bench-reconcile: {min(n, start + 5000)} users seeded", flush=True)
    return time.monotonic() - started


async def _call(method: str, url: str, **kwargs: Any) -> Any:
    async with httpx.AsyncClient(timeout=30) as client:
        answer = await client.request(method, url, **kwargs)
    answer.raise_for_status()
    return answer.json() if answer.content else None


async def _ap_requests(ap_url: str) -> int:
    return int((await _call("GET", f"{ap_url}/_sim/stats"))["total"])


async def _members_written(mc_url: str) -> int:
    stats = await _call("GET", f"{mc_url}/_sim/stats")
    return int(sum(stats.get("members_written", {}).values()))


async def _audience_size(mc_url: str) -> int:
    found = await _call(
        "GET",
        f"{mc_url}/3.0/lists/{DEMO_MAILCHIMP_AUDIENCE}/members",
        params={"count": 1, "fields": "total_items"},
        auth=("bench", DEMO_MAILCHIMP_API_KEY),
    )
    return int(found["total_items"])


async def _run(kafka: str, instance_id: str, *, repair: bool) -> tuple[ReconcileProgress, float]:
    request = ReconcileRequest(
        run_id=uuid.uuid4().hex[:16], instance_id=instance_id, repair=repair, requested_at=utcnow()
    )
    started = time.monotonic()
    progress, _ = await follow_run(
        KafkaConnection(kafka, "tandem-bench"), request, on_progress=lambda _: None, start_timeout_s=120
    )
    if progress is None or progress.status is not RunStatus.DONE:
        raise RuntimeError(f"reconciliation run did not finish: {progress}")
    return progress, time.monotonic() - started


async def _backfill(kafka: str, instance_id: str, mc_url: str, ap_url: str, n: int, writer: int) -> dict[str, Any]:
    sampler = ResourceSampler({"writer": writer})
    ap_before = await _ap_requests(ap_url)
    sampler.start()
    t0 = time.monotonic()
    run_task = asyncio.create_task(_run(kafka, instance_id, repair=True))
    first: float | None = None
    written = 0
    deadline = t0 + 1800
    while time.monotonic() < deadline:
        written = await _members_written(mc_url)
        now = time.monotonic()
        if written and first is None:
            first = now
        if written >= n and run_task.done():
            break
        await asyncio.sleep(0.25)
    last = time.monotonic()
    progress, run_s = await run_task
    usage, _ = await sampler.stop()
    controls = await _call("GET", f"{mc_url}/_sim/controls")
    per_member_ms = float(controls.get("latency_per_member_ms") or 2.0)
    batch_latency = BATCH_REQUEST_LATENCY_S + BATCH_MEMBERS * per_member_ms / 1000
    ideal = CONNECTIONS * BATCH_MEMBERS / batch_latency
    rate = written / max(last - (first or t0), 1e-6)
    ap_spent = (await _ap_requests(ap_url)) - ap_before - 1  # less this stats read itself
    return {
        "users": n,
        "members_written": written,
        "audience_size": await _audience_size(mc_url),
        "members_per_s": round(rate, 1),
        "ideal_members_per_s": round(ideal, 1),
        "ratio_to_ideal": round(rate / ideal, 3),
        "modelled_batch_latency_s": round(batch_latency, 3),
        "run_s": round(run_s, 1),
        "first_to_last_write_s": round(last - (first or t0), 1),
        "request_to_last_write_s": round(last - t0, 1),
        "accessplanit_requests": ap_spent,
        "accessplanit_requests_per_500_users": round(ap_spent / n * 500, 3),
        "run_requests": progress.requests,
        "published": progress.published,
        "writer_rss_peak_mb": usage["writer"].rss_peak_mb,
    }


async def _compare(kafka: str, instance_id: str, ap_url: str, writer: int) -> dict[str, Any]:
    sampler = ResourceSampler({"writer": writer})
    ap_before = await _ap_requests(ap_url)
    sampler.start()
    progress, wall = await _run(kafka, instance_id, repair=False)
    usage, _ = await sampler.stop()
    return {
        "contacts_accessplanit": progress.read_accessplanit,
        "contacts_mailchimp": progress.read_mailchimp,
        "wall_s": round(wall, 1),
        "requests": progress.requests,
        "accessplanit_requests_seen_by_simulator": (await _ap_requests(ap_url)) - ap_before - 1,
        "counts": progress.counts,
        "writer_rss_peak_mb": usage["writer"].rss_peak_mb,
    }


async def _phase(n: int, stack: Stack, ports: Ports, kafka: str, instance_id: str) -> dict[str, Any]:
    mc_url, ap_url = f"http://127.0.0.1:{ports.mailchimp_sim}", f"http://127.0.0.1:{ports.accessplanit_sim}"
    writer = next(s.pid for s in stack.running if s.spec.name == "writer")
    await _call("POST", f"{ap_url}/_sim/controls", json={"rate_limit_per_window": 100_000_000})
    await _call("POST", f"{mc_url}/_sim/reset")
    for route in ("PUT member", "POST batch subscribe"):
        control = {"route": route, "latency_ms": int(BATCH_REQUEST_LATENCY_S * 1000)}
        await _call("POST", f"{mc_url}/_sim/controls", json=control)
    seed_s = await _seed(ap_url, n, uuid.uuid4().hex[:6])
    idle = ResourceSampler({"writer": writer})
    idle.start()
    await asyncio.sleep(2)
    baseline = (await idle.stop())[0]["writer"].rss_peak_mb
    print(f"bench-reconcile: {n} users seeded in {seed_s:.0f} s; audience {await _audience_size(mc_url)}", flush=True)
    backfill = await _backfill(kafka, instance_id, mc_url, ap_url, n, writer)
    print(f"bench-reconcile: backfill {backfill}", flush=True)
    compare = await _compare(kafka, instance_id, ap_url, writer)
    print(f"bench-reconcile: comparison {compare}", flush=True)
    return {"seed_s": round(seed_s, 1), "writer_rss_idle_mb": baseline, "backfill": backfill, "comparison": compare}


def run(n: int, data_dir: Path) -> dict[str, Any]:
    with bench_infra() as own:
        ports = Ports(**{f.name: free_port() for f in fields(Ports)})
        suffix = uuid.uuid4().hex[:8]
        instance = bench_instance(ports, f"bench-rec-{suffix}", signed=False)
        connection = KafkaConnection(own.kafka, "tandem-bench")
        asyncio.run(put_instance(connection, instance))
        env, _ = pipeline_env(own.kafka, own.redis, ports, data_dir, suffix, {"TANDEM_WRITER_RECONCILE_TICK_S": "0.5"})
        stack = Stack(env=env, log_dir=data_dir / "logs")
        try:
            for spec in service_specs(ports):
                if spec.name in SERVICES:
                    stack.start(spec)
            return asyncio.run(_phase(n, stack, ports, own.kafka, instance.id))
        finally:
            stack.stop()
            if not own.kafka_started_here:
                asyncio.run(remove_instance(connection, own.redis, instance.id))


def render(results: dict[str, Any]) -> str:
    b, c = results["backfill"], results["comparison"]
    n = b["users"]
    rows = [
        f"# Reconciliation benchmark ({results['started_at']})",
        "",
        f"Machine load before: {results['load_before']}. {n:,} accessplanit users seeded in {results['seed_s']} s.",
        "",
        "| Figure | Value | Target |",
        "|---|---|---|",
        f"| Backfill into an empty audience: members written per second | {b['members_per_s']:,} | — |",
        f"| … ratio to the batch endpoint's ideal ({b['ideal_members_per_s']:,}/s = 10 × 500 ÷ "
        f"{b['modelled_batch_latency_s']} s) | {b['ratio_to_ideal']:.0%} | ≥ 80% |",
        f"| Members written / audience size after the backfill | {b['members_written']:,} / {b['audience_size']:,} | "
        f"{n:,} |",
        f"| From the run request to the last member written | {b['request_to_last_write_s']} s | — |",
        f"| accessplanit requests spent by the backfill | {b['accessplanit_requests']} "
        f"({b['accessplanit_requests_per_500_users']} per 500 users) | ≤ 1 per 500 users |",
        "| Writer (runs the reconciliation) peak RSS: idle / backfill / comparison | "
        f"{results['writer_rss_idle_mb']} / {b['writer_rss_peak_mb']} / {c['writer_rss_peak_mb']} MB | < 500 MB |",
        f"| Dry-run comparison of {c['contacts_accessplanit']:,} / {c['contacts_mailchimp']:,} contacts: wall time | "
        f"{c['wall_s']} s | — |",
        f"| … vendor requests | accessplanit {c['requests'].get('accessplanit', 0)}, Mailchimp "
        f"{c['requests'].get('mailchimp', 0)} | — |",
        "",
        f"Comparison counts: {c['counts']}.",
        "",
        "Memory grows linearly with N: a run holds both sides' mapped fields in memory (one small record per contact)"
        " to pair them by address; the report rows and repairs are streamed out in batches of 500.",
        "",
    ]
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(prog="tandem_bench.reconcile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=50_000)
    args = parser.parse_args()
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    work = Path(f"/tmp/tandem-bench-reconcile-{uuid.uuid4().hex[:6]}")
    work.mkdir(parents=True)
    results: dict[str, Any] = {"started_at": started, "load_before": uptime_line(), "loadavg": load_average()}
    try:
        results.update(run(args.users, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["load_after"] = uptime_line()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = started.replace(":", "").replace("-", "")
    markdown = render(results)
    (RESULTS / f"reconcile-{stamp}.json").write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    (RESULTS / f"reconcile-{stamp}.md").write_text(markdown)
    (RESULTS / "reconcile-latest.md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
