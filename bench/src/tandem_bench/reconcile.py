"""The reconciliation benchmark (`make bench-reconcile`, `python -m tandem_bench.reconcile [--users N]`).

1. A backfill: N accessplanit users, an empty audience, `tandem reconcile --repair`: members written per second
   (first to last member written) against the batch endpoint's ideal (10 connections × 500 members ÷ the modelled
   batch latency: 150 ms a request plus the simulator's per-member cost), the accessplanit requests the run spent
   (target: at most one per 500 users read) and the writer's peak memory (the run executes in the writer).
2. A dry-run comparison of N contacts on each side: wall time and vendor requests.
3. The writer's own ceiling, in the same run: M backfill-shaped changes (the events a backfill publishes, for M
   new addresses) put on `tandem.changes` while the writer is stopped; once the mapper has turned them all into
   commands, the writer starts again and its members written per second (first to last) is its ceiling: the same
   process, configuration and simulator latency, fed as fast as it can take commands. The mapper's own rate comes
   from the same step (changes put → all committed).

Where the backfill's time goes: the run's phases as it reported them (reading, comparing, publishing), and the CPU
seconds each process spent (mapper, writer, the reconciliation executor, the simulators, Kafka, Redis).

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
from dataclasses import fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from tandem_bench.profile import Profiler
from tandem_bench.resources import ResourceSampler, load_average, pid_listening_on, uptime_line
from tandem_bench.stack import Infra, bench_infra, bench_instance, forget_instance, lag, pipeline_env
from tandem_devstack.paths import REPO_ROOT
from tandem_devstack.processes import free_port
from tandem_devstack.stack import (
    DEMO_ACCESSPLANIT_ADMIN_KEY,
    DEMO_MAILCHIMP_API_KEY,
    DEMO_MAILCHIMP_AUDIENCE,
    Ports,
    ServiceSpec,
    Stack,
    service_specs,
)
from tandem_shared.contracts import InstanceConfig, System, utcnow
from tandem_shared.contracts.envelopes import change_envelope
from tandem_shared.contracts.reconcile import ReconcileProgress, ReconcileRequest, RunStatus
from tandem_shared.contracts.topics import CHANGES
from tandem_shared.instance_store import put_instance
from tandem_shared.kafka import KafkaConnection, KafkaProducer
from tandem_shared.kafka.producer import send_envelope
from tandem_shared.reconcile.domain import Repair, accessplanit_select, ap_user, field_pairs, repair_event
from tandem_shared.reconcile.follow import follow_run

RESULTS = REPO_ROOT / "bench" / "results"
BATCH_REQUEST_LATENCY_S = 0.150  # as the budget phase models Mailchimp
CONNECTIONS = 10
BATCH_MEMBERS = 500
SERVICES = ("mailchimp-sim", "accessplanit-sim", "mapper", "writer")
# The ceiling is a steady rate: this many commands measure it as well as 50,000 would, in less time.
CEILING_MAX = 10_000
PROFILE_S = 20


def _port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1].split("/")[0])


class Phase:
    """One bench stack: its services' processes, the simulators' addresses, the pipeline's consumer groups."""

    def __init__(self, stack: Stack, ports: Ports, infra: Infra, instance: InstanceConfig, groups: dict[str, str]):
        self.stack = stack
        self.kafka = infra.kafka
        self.instance = instance
        self.groups = groups
        self.mc_url = f"http://127.0.0.1:{ports.mailchimp_sim}"
        self.ap_url = f"http://127.0.0.1:{ports.accessplanit_sim}"
        self.infra_pids = {
            name: pid
            for name, address in (("kafka", infra.kafka), ("redis", infra.redis))
            if (pid := pid_listening_on(_port_of(address)))
        }
        self.profile_dir: Path | None = None
        self.stopped: dict[str, ServiceSpec] = {}  # services stopped for a ceiling, to be started again

    def pid(self, name: str) -> int:
        return next(s.pid for s in self.stack.running if s.spec.name == name)

    def spec(self, name: str) -> ServiceSpec:
        return next(s.spec for s in self.stack.running if s.spec.name == name)

    @property
    def executor(self) -> str:
        """The process that executes reconciliation runs."""
        return "reconciler" if any(s.spec.name == "reconciler" for s in self.stack.running) else "writer"

    def sampler(self) -> ResourceSampler:
        """Every process of the stack, Kafka and Redis. This process (it follows the run's progress and report rows,
        as the CLI would from another machine, and polls the simulator) is counted apart, by `process_time`: its
        process tree holds the whole stack."""
        return ResourceSampler({**{s.spec.name: s.pid for s in self.stack.running}, **self.infra_pids})


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
            for attempt in range(5):
                try:
                    async with gate:
                        if attempt and (await _user_exists(client, body["Email"])):
                            return
                        answer = await client.post("/User", json=body)
                    answer.raise_for_status()
                    return
                except httpx.TransportError:  # the simulator dropped a connection under the machine's load
                    await asyncio.sleep(1.0)
            raise RuntimeError(f"could not seed user {i}")

        for start in range(0, n, 5000):
            await asyncio.gather(*(create(i) for i in range(start, min(n, start + 5000))))
            print(f"bench-reconcile: {min(n, start + 5000)} users seeded", flush=True)
    return time.monotonic() - started


async def _user_exists(client: httpx.AsyncClient, email: str) -> bool:
    """Whether a create whose answer was lost went through (a second create would make a duplicate address)."""
    found = await client.get("/User", params={"$filter": f"Email eq '{email}'", "$select": "ID"})
    found.raise_for_status()
    return bool(found.json().get("results"))


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


class _Timeline:
    """When the run reported each phase first (seconds after the request)."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.phases: dict[str, float] = {}

    def __call__(self, progress: ReconcileProgress) -> None:
        self.phases.setdefault(progress.phase, round(time.monotonic() - self.t0, 2))


async def _run(kafka: str, instance_id: str, *, repair: bool, timeline: _Timeline) -> tuple[ReconcileProgress, float]:
    request = ReconcileRequest(
        run_id=uuid.uuid4().hex[:16], instance_id=instance_id, repair=repair, requested_at=utcnow()
    )
    started = time.monotonic()
    progress, _ = await follow_run(
        KafkaConnection(kafka, "tandem-bench"), request, on_progress=timeline, start_timeout_s=120
    )
    if progress is None or progress.status is not RunStatus.DONE:
        raise RuntimeError(f"reconciliation run did not finish: {progress}")
    return progress, time.monotonic() - started


async def _until_written(mc_url: str, target: int, cap_s: float, before: int = 0) -> tuple[float | None, float, int]:
    """Polls the simulator (one client: a new one each time costs the machine CPU the run needs) until `target`
    members were written (cumulative): (first write after `before`, last write, written)."""
    first: float | None = None
    written = 0
    deadline = time.monotonic() + cap_s
    async with httpx.AsyncClient(timeout=30) as client:
        while time.monotonic() < deadline:
            answer = await client.get(f"{mc_url}/_sim/stats")
            answer.raise_for_status()
            written = int(sum(answer.json().get("members_written", {}).values()))
            if written > before and first is None:
                first = time.monotonic()
            if written >= target:
                break
            await asyncio.sleep(0.25)
    return first, time.monotonic(), written


def _cpu(usage: dict[str, Any], members: int, bench_cpu_s: float) -> dict[str, dict[str, float]]:
    """CPU seconds per process over a step (this one's own as "bench"), and milliseconds per member written."""
    spent = {**{name: u.cpu_s for name, u in usage.items()}, "bench": round(bench_cpu_s, 3)}
    return {
        name: {"cpu_s": cpu_s, "ms_per_member": round(1000 * cpu_s / max(members, 1), 3)}
        for name, cpu_s in sorted(spent.items(), key=lambda kv: -kv[1])
    }


async def _profile_start(phase: Phase, names: tuple[str, ...], label: str) -> Profiler | None:
    if phase.profile_dir is None:
        return None
    profiler = Profiler({n: phase.pid(n) for n in names}, phase.profile_dir / label)
    try:
        await profiler.start(duration_s=PROFILE_S)
    except RuntimeError as exc:  # py-spy not installed: the figures stand without the frames
        print(f"bench-reconcile: no profile ({exc})", flush=True)
        return None
    return profiler


async def _backfill(phase: Phase, n: int) -> dict[str, Any]:
    executor = phase.executor
    rss = ResourceSampler({executor: phase.pid(executor)})
    cpu = phase.sampler()
    ap_before = await _ap_requests(phase.ap_url)
    before = await _members_written(phase.mc_url)
    rss.start()
    cpu.start()
    bench_cpu = time.process_time()
    timeline = _Timeline()
    t0 = timeline.t0
    profiler = await _profile_start(phase, tuple(sorted({"mapper", "writer", executor})), "backfill")
    run_task = asyncio.create_task(_run(phase.kafka, phase.instance.id, repair=True, timeline=timeline))
    first, last, written = await _until_written(phase.mc_url, before + n, 1800, before)
    written -= before
    progress, run_s = await run_task
    usage, machine_busy = await cpu.stop()
    peak, _ = await rss.stop()
    profile = await profiler.finish() if profiler is not None else None
    controls = await _call("GET", f"{phase.mc_url}/_sim/controls")
    per_member_ms = float(controls.get("latency_per_member_ms") or 2.0)
    batch_latency = BATCH_REQUEST_LATENCY_S + BATCH_MEMBERS * per_member_ms / 1000
    ideal = CONNECTIONS * BATCH_MEMBERS / batch_latency
    rate = written / max(last - (first or t0), 1e-6)
    ap_spent = (await _ap_requests(phase.ap_url)) - ap_before - 1  # less this stats read itself
    return {
        "users": n,
        "members_written": written,
        "audience_size": await _audience_size(phase.mc_url),
        "members_per_s": round(rate, 1),
        "ideal_members_per_s": round(ideal, 1),
        "ratio_to_ideal": round(rate / ideal, 3),
        "modelled_batch_latency_s": round(batch_latency, 3),
        "run_s": round(run_s, 1),
        "first_write_s": round((first or last) - t0, 1),
        "first_to_last_write_s": round(last - (first or t0), 1),
        "request_to_last_write_s": round(last - t0, 1),
        "run_phases_s": timeline.phases,
        "accessplanit_requests": ap_spent,
        "accessplanit_requests_per_500_users": round(ap_spent / n * 500, 3),
        "run_requests": progress.requests,
        "published": progress.published,
        "executor": executor,
        "executor_rss_peak_mb": peak[executor].rss_peak_mb,
        "cpu": _cpu(usage, written, time.process_time() - bench_cpu),
        "machine_busy_percent": machine_busy,
        "profile": profile,
    }


async def _compare(phase: Phase) -> dict[str, Any]:
    executor = phase.executor
    sampler = ResourceSampler({executor: phase.pid(executor)})
    ap_before = await _ap_requests(phase.ap_url)
    sampler.start()
    progress, wall = await _run(phase.kafka, phase.instance.id, repair=False, timeline=_Timeline())
    usage, _ = await sampler.stop()
    return {
        "contacts_accessplanit": progress.read_accessplanit,
        "contacts_mailchimp": progress.read_mailchimp,
        "wall_s": round(wall, 1),
        "requests": progress.requests,
        "accessplanit_requests_seen_by_simulator": (await _ap_requests(phase.ap_url)) - ap_before - 1,
        "counts": progress.counts,
        "executor_rss_peak_mb": usage[executor].rss_peak_mb,
    }


async def _ceiling_events(phase: Phase, m: int) -> list[Any]:
    """M changes shaped as a backfill publishes them: a seeded user's record as the run reads it (same `$select`),
    under a new ID and address each, through the run's own `repair_event`."""
    instance = phase.instance
    page = await _call(
        "GET",
        f"{phase.ap_url}/api/v2/User",
        params={"$top": "1", "$select": accessplanit_select(instance)},
        headers={"Authorization": f"Bearer {DEMO_ACCESSPLANIT_ADMIN_KEY}"},
    )
    template = page["results"][0]
    tag, pairs, received = uuid.uuid4().hex[:6], field_pairs(instance), utcnow()
    events = []
    for i in range(m):
        user = ap_user({**template, "ID": f"ceil-{tag}-{i}", "Email": f"c{i}.{tag}@example.com"})
        assert user is not None
        event = repair_event(
            instance, Repair(System.ACCESSPLANIT, ap_user=user), run_id=f"ceil-{tag}", received_at=received, pairs=pairs
        )
        assert event is not None
        events.append(event)
    return events


async def _wait_lag(phase: Phase, groups: dict[str, str], cap_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < cap_s:
        if await lag(phase.kafka, groups) == 0:
            break
        await asyncio.sleep(1.0)  # each look builds Kafka clients: not too often on a machine the mapper needs
    return time.monotonic()


async def _put(phase: Phase, events: list[Any]) -> float:
    producer = KafkaProducer(KafkaConnection(phase.kafka, "tandem-bench"))
    await producer.start()
    t0 = time.monotonic()
    try:
        acks = [await send_envelope(producer, change_envelope(e)) for e in events]
        await asyncio.gather(*acks)
    finally:
        await producer.stop()
    return time.monotonic() - t0


async def _write_timed(phase: Phase, m: int, start: tuple[str, ...], label: str) -> dict[str, Any]:
    """Starts the stopped services `start` (in that order) and times the M members waiting for them: first write to
    last, with the CPU each process spent meanwhile."""
    specs = {name: phase.stopped.pop(name) for name in start}
    before = await _members_written(phase.mc_url)
    started = time.monotonic()
    for name in start:
        await asyncio.to_thread(phase.stack.start, specs[name])
    cpu = phase.sampler()
    cpu.start()
    bench_cpu = time.process_time()
    profiler = await _profile_start(phase, ("writer",), label)
    first, last, written = await _until_written(phase.mc_url, before + m, 1800, before)
    written -= before
    usage, machine_busy = await cpu.stop()
    profile = await profiler.finish() if profiler is not None else None
    return {
        "commands": m,
        "members_written": written,
        "start_to_first_write_s": round((first or last) - started, 1),
        "first_to_last_write_s": round(last - (first or started), 1),
        "members_per_s": round(written / max(last - (first or started), 1e-6), 1),
        "cpu": _cpu(usage, written, time.process_time() - bench_cpu),
        "machine_busy_percent": machine_busy,
        "profile": profile,
    }


async def _stop(phase: Phase, *names: str) -> None:
    for name in names:
        phase.stopped[name] = phase.spec(name)
        await asyncio.to_thread(phase.stack.stop, name)


async def _pipeline_ceiling(phase: Phase, m: int) -> dict[str, Any]:
    """M backfill-shaped changes waiting on `tandem.changes`, then writer and mapper started: the rate at which the
    pipeline writes repairs published all at once, i.e. a run with no reading and no publishing of its own."""
    events = await _ceiling_events(phase, m)
    await _stop(phase, "mapper", "writer")
    put_s = await _put(phase, events)
    del events
    return {"changes_put_s": round(put_s, 1), **await _write_timed(phase, m, ("writer", "mapper"), "pipeline")}


async def _writer_ceiling(phase: Phase, m: int) -> dict[str, Any]:
    """The writer's own ceiling: M backfill-shaped commands waiting for it (the mapper made them from M changes
    while the writer was stopped), then the writer started (see the module's docstring)."""
    events = await _ceiling_events(phase, m)
    await _stop(phase, "writer")
    mapper_groups = {g: t for g, t in phase.groups.items() if t == CHANGES}
    mapper_cpu = ResourceSampler({"mapper": phase.pid("mapper")})
    mapper_cpu.start()
    t0 = time.monotonic()
    put_s = await _put(phase, events)
    del events
    mapped = await _wait_lag(phase, mapper_groups, 900)
    mapper_usage, _ = await mapper_cpu.stop()
    return {
        "changes_put_s": round(put_s, 1),
        "mapper_s": round(mapped - t0, 1),
        "mapper_changes_per_s": round(m / max(mapped - t0, 1e-6), 1),
        "mapper_cpu_ms_per_change": round(1000 * mapper_usage["mapper"].cpu_s / m, 3),
        **await _write_timed(phase, m, ("writer",), "ceiling"),
    }


async def _phase(n: int, phase: Phase, ceiling: int) -> dict[str, Any]:
    mc_url, ap_url = phase.mc_url, phase.ap_url
    executor = phase.executor
    await _call("POST", f"{ap_url}/_sim/controls", json={"rate_limit_per_window": 100_000_000})
    await _call("POST", f"{mc_url}/_sim/reset")
    for route in ("PUT member", "POST batch subscribe"):
        control = {"route": route, "latency_ms": int(BATCH_REQUEST_LATENCY_S * 1000)}
        await _call("POST", f"{mc_url}/_sim/controls", json=control)
    seed_s = await _seed(ap_url, n, uuid.uuid4().hex[:6])
    idle = ResourceSampler({executor: phase.pid(executor)})
    idle.start()
    await asyncio.sleep(2)
    baseline = (await idle.stop())[0][executor].rss_peak_mb
    print(f"bench-reconcile: {n} users seeded in {seed_s:.0f} s; audience {await _audience_size(mc_url)}", flush=True)
    backfill = await _backfill(phase, n)
    print(f"bench-reconcile: backfill {_brief(backfill)}", flush=True)
    compare = await _compare(phase)
    print(f"bench-reconcile: comparison {compare}", flush=True)
    ceiling_figures = await _writer_ceiling(phase, ceiling)
    print(f"bench-reconcile: writer ceiling {_brief(ceiling_figures)}", flush=True)
    pipeline = await _pipeline_ceiling(phase, ceiling)
    print(f"bench-reconcile: pipeline ceiling {_brief(pipeline)}", flush=True)
    ideal = backfill["ideal_members_per_s"]
    bound = min(ideal, ceiling_figures["members_per_s"])
    backfill["ratio_to_bound"] = round(backfill["members_per_s"] / bound, 3) if bound else None
    to_pipeline = min(ideal, pipeline["members_per_s"])
    backfill["ratio_to_pipeline_bound"] = round(backfill["members_per_s"] / to_pipeline, 3) if to_pipeline else None
    return {
        "seed_s": round(seed_s, 1),
        "executor_rss_idle_mb": baseline,
        "backfill": backfill,
        "comparison": compare,
        "ceiling": ceiling_figures,
        "pipeline_ceiling": pipeline,
    }


def _brief(figures: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in figures.items() if k not in ("profile", "cpu")}


def reconciler_spec(port: int) -> ServiceSpec:
    """The writer package's reconciler role: reconciliation runs in a process of their own (the writer's vendor
    credentials and settings), so a backfill's reading and publishing never takes the live writer's CPU."""
    argv = ["uvicorn", "tandem_writer.reconciler:create_app", "--factory", "--host", "127.0.0.1", "--port", str(port)]
    return ServiceSpec("reconciler", [*argv, "--no-access-log"], port, "/health/live")


def run_on(
    infra: Infra,
    n: int,
    data_dir: Path,
    *,
    ceiling: int | None = None,
    profile: bool = False,
    reconciler: bool = True,
) -> dict[str, Any]:
    """The benchmark on Kafka and Redis already running (`make bench` runs it after its own phases). `reconciler`:
    runs execute in the writer package's reconciler role, a process of their own; otherwise in the writer."""
    ports = Ports(**{f.name: free_port() for f in fields(Ports)})
    suffix = uuid.uuid4().hex[:8]
    instance = bench_instance(ports, f"bench-rec-{suffix}", signed=False)
    connection = KafkaConnection(infra.kafka, "tandem-bench")
    asyncio.run(put_instance(connection, instance))
    extra = {"TANDEM_WRITER_RECONCILE_TICK_S": "0.5"}
    env, groups = pipeline_env(infra.kafka, infra.redis, ports, data_dir, suffix, extra)
    stack = Stack(env=env, log_dir=data_dir / "logs")
    try:
        for spec in service_specs(ports):
            if spec.name == "writer" and reconciler:
                spec = replace(spec, env={**spec.env, "TANDEM_WRITER_RECONCILE_RUNS": "false"})
            if spec.name in SERVICES:
                stack.start(spec)
        if reconciler:
            stack.start(reconciler_spec(free_port()))
        phase = Phase(stack, ports, infra, instance, groups)
        if profile:
            phase.profile_dir = RESULTS / "profiles" / f"reconcile-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
        return asyncio.run(_phase(n, phase, min(n, CEILING_MAX) if ceiling is None else ceiling))
    finally:
        stack.stop()
        asyncio.run(forget_instance(infra, instance.id))


def run(n: int, data_dir: Path, *, profile: bool = False, reconciler: bool = True) -> dict[str, Any]:
    with bench_infra() as infra:
        return run_on(infra, n, data_dir, profile=profile, reconciler=reconciler)


def rows(results: dict[str, Any]) -> list[str]:
    """The figures as a table (this benchmark's report, and the reconciliation section of `make bench`'s)."""
    b, c, w, p = results["backfill"], results["comparison"], results["ceiling"], results["pipeline_ceiling"]
    n = b["users"]
    bound = min(b["ideal_members_per_s"], w["members_per_s"])
    pipeline_bound = min(b["ideal_members_per_s"], p["members_per_s"])
    ratio = b.get("ratio_to_bound")
    met = "met" if ratio is not None and ratio >= 0.8 else "**not met**"
    phases = ", ".join(f"{name} at {at} s" for name, at in b.get("run_phases_s", {}).items())
    return [
        "| Figure | Value | Target |",
        "|---|---|---|",
        f"| Backfill into an empty audience: members written per second | {b['members_per_s']:,} | — |",
        f"| … ratio to the batch endpoint's ideal ({b['ideal_members_per_s']:,}/s = 10 × 500 ÷ "
        f"{b['modelled_batch_latency_s']} s) | {b['ratio_to_ideal']:.0%} | — |",
        f"| Writer's ceiling, same run ({w['commands']:,} backfill commands waiting, writer started): members/s | "
        f"{w['members_per_s']:,} | — |",
        f"| … ratio of the backfill to min(ideal, ceiling) = {bound:,}/s | {ratio:.1%} | ≥ 80% ({met}) |",
        f"| Pipeline's ceiling, same run ({p['commands']:,} backfill changes waiting, mapper and writer started): "
        f"members/s | {p['members_per_s']:,} | — |",
        f"| … ratio of the backfill to min(ideal, pipeline's ceiling) = {pipeline_bound:,}/s | "
        f"{b['ratio_to_pipeline_bound']:.0%} | — |",
        f"| Members written / audience size after the backfill | {b['members_written']:,} / {b['audience_size']:,} | "
        f"{n:,} |",
        f"| From the run request to the first / last member written | {b['first_write_s']} / "
        f"{b['request_to_last_write_s']} s | — |",
        f"| accessplanit requests spent by the backfill | {b['accessplanit_requests']} "
        f"({b['accessplanit_requests_per_500_users']} per 500 users) | ≤ 1 per 500 users |",
        f"| Reconciliation executor ({b['executor']}) peak RSS: idle / backfill / comparison | "
        f"{results['executor_rss_idle_mb']} / {b['executor_rss_peak_mb']} / {c['executor_rss_peak_mb']} MB | "
        "< 500 MB |",
        f"| Dry-run comparison of {c['contacts_accessplanit']:,} / {c['contacts_mailchimp']:,} contacts: wall time | "
        f"{c['wall_s']} s | — |",
        f"| … vendor requests | accessplanit {c['requests'].get('accessplanit', 0)}, Mailchimp "
        f"{c['requests'].get('mailchimp', 0)} | — |",
        "",
        f"The run's phases (seconds after the request): {phases}. Mapper alone: {w['mapper_changes_per_s']:,} "
        f"changes/s ({w['mapper_cpu_ms_per_change']} ms CPU a change).",
        "",
        "CPU per member written (ms), backfill / writer's ceiling / pipeline's ceiling: "
        + ", ".join(
            f"{name} {v['ms_per_member']} / {w['cpu'].get(name, {}).get('ms_per_member', '—')} / "
            f"{p['cpu'].get(name, {}).get('ms_per_member', '—')}"
            for name, v in b["cpu"].items()
        )
        + f". Machine busy (all processes, others' included): {b['machine_busy_percent']}% / "
        f"{w['machine_busy_percent']}% / {p['machine_busy_percent']}% of both cores.",
    ]


def render(results: dict[str, Any]) -> str:
    n = results["backfill"]["users"]
    lines = [
        f"# Reconciliation benchmark ({results['started_at']})",
        "",
        f"Machine load before: {results['load_before']}. {n:,} accessplanit users seeded in {results['seed_s']} s.",
        "",
        *rows(results),
        "",
        f"Comparison counts: {results['comparison']['counts']}.",
        "",
        "Memory grows linearly with N: a run holds both sides' mapped fields in memory (one small record per contact)"
        " to pair them by address; the report rows and repairs are streamed out in batches of 500.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="tandem_bench.reconcile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--profile", action="store_true", help="py-spy on mapper and writer (needs bench[profile])")
    parser.add_argument(
        "--executor",
        choices=("reconciler", "writer"),
        default="reconciler",
        help="where runs execute: the reconciler role (a process of its own, the default) or the live writer",
    )
    args = parser.parse_args()
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    work = Path(f"/tmp/tandem-bench-reconcile-{uuid.uuid4().hex[:6]}")
    work.mkdir(parents=True)
    results: dict[str, Any] = {"started_at": started, "load_before": uptime_line(), "loadavg": load_average()}
    try:
        results.update(run(args.users, work, profile=args.profile, reconciler=args.executor == "reconciler"))
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
