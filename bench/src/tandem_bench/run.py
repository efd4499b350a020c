"""`python -m tandem_bench [--quick]`: every phase of the benchmark, in one run, on one machine."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from tandem_bench import reconcile, report
from tandem_bench.loadgen import Spec
from tandem_bench.payloads import AUDIENCE_ID, Clock, accessplanit_update, email_of
from tandem_bench.profile import Profiler
from tandem_bench.resources import ResourceSampler, load_average, machine, uptime_line
from tandem_bench.stack import NAIVE, BenchStack, Infra, bench_stack, lag
from tandem_bench.stats import budget_use, cpu_percent, summarize_latencies, throughput
from tandem_bench.traces import TraceCollector
from tandem_devstack.demo import accessplanit_webhook_url
from tandem_devstack.paths import REPO_ROOT
from tandem_devstack.stack import (
    DEMO_ACCESSPLANIT_ADMIN_KEY,
    DEMO_ACCESSPLANIT_WEBHOOK_SECRET,
    DEMO_MAILCHIMP_API_KEY,
    DEMO_MAILCHIMP_WEBHOOK_SECRET,
)
from tandem_ingest.domain.normalize.accessplanit import normalize_webhook
from tandem_mapper.domain.decision import decide
from tandem_mapper.domain.model import Knowledge
from tandem_shared.contracts import subscriber_hash, utcnow
from tandem_shared.contracts.topics import CHANGES

RESULTS = REPO_ROOT / "bench" / "results"
BUDGET_LATENCY_S = 0.150
# The routes that write members: Tandem's writer sends a contact alone as a PUT and a backlog as batch subscribes.
MEMBER_WRITE_ROUTES = ("PUT member", "POST batch subscribe")
# Bursts are judged with Mailchimp answering as slowly as it does in production; a second burst with the
# updates 50 ms apart and an instant simulator shows the case where there is least to coalesce.
BURST_LATENCY_MS = 150
RATES = (50, 200, 1000)


@dataclass(frozen=True)
class Plan:
    mode: str
    throughput_events: int
    raw_events: int
    rate_seconds: dict[int, float]
    budget_events: int
    budget_wait_s: float
    burst_contacts: int
    mailchimp_seconds: float
    wait_cap_s: float  # the longest any phase waits for Tandem to finish what it accepted
    import_users: int = 500
    # The reconciliation phase (`tandem_bench.reconcile`): a backfill of this many users, the comparison and the
    # writer's ceiling; `make bench-reconcile` runs it at 50,000.
    reconcile_users: int = 10_000
    profile_seconds: int = 10
    # The naive sync falls over at 1,000/s and needs a minute or two to recover; --quick leaves that rate out.
    naive_rates: tuple[int, ...] = RATES

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            "quick",
            2000,
            10000,
            {50: 3, 200: 3, 1000: 3},
            1000,
            20,
            10,
            3,
            20,
            import_users=300,
            naive_rates=(50, 200),
            reconcile_users=2000,
        )

    @classmethod
    def full(cls) -> Plan:
        return cls("full", 6000, 60000, {50: 20, 200: 20, 1000: 10}, 3000, 120, 30, 15, 300, import_users=3000)


class Bench:
    def __init__(self, stack: BenchStack, plan: Plan, work: Path) -> None:
        self.stack = stack
        self.plan = plan
        self.work = work
        self.collector = TraceCollector(stack.kafka, stack.instance.id)
        self.next_user = 1_000_000
        self.notes: list[str] = []
        self.profile_dir: Path | None = None
        self.profile: dict[str, Any] | None = None

    # --- helpers ---

    def users(self, count: int) -> int:
        """A fresh block of user ids: every phase writes contacts no earlier phase touched."""
        first = self.next_user
        self.next_user += count + 1000
        return first

    def spec(self, service: str, **kwargs: Any) -> Spec:
        return Spec(
            base_url=self.stack.url(service),
            instance_id=self.stack.instance.id,
            ap_secret=DEMO_ACCESSPLANIT_WEBHOOK_SECRET,
            mc_path_secret=DEMO_MAILCHIMP_WEBHOOK_SECRET,
            # Vendors give up on a webhook delivery after about 10 s (and retry it later).
            timeout_s=10.0,
            **kwargs,
        )

    async def load(self, spec: Spec) -> dict[str, Any]:
        name = uuid.uuid4().hex[:8]
        spec_path, out_path = self.work / f"spec-{name}.json", self.work / f"out-{name}.json"
        spec_path.write_bytes(orjson.dumps(asdict(spec)))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tandem_bench.loadgen", str(spec_path), str(out_path)
        )
        self.stack.pids["loadgen"] = proc.pid
        if await proc.wait() != 0:
            raise RuntimeError(f"load generator failed for {spec.mode} against {spec.base_url}")
        return dict(orjson.loads(out_path.read_bytes()))

    async def sim_quiet(self, cap_s: float = 60) -> None:
        """Wait until the Mailchimp simulator has nothing in flight and no new requests for a second.

        A naive sync keeps writing for requests its sender already gave up on; the next phase must not count them.
        """
        deadline = time.monotonic() + cap_s
        last = None
        while time.monotonic() < deadline:
            stats = self.stack.sim("/_sim/stats", method="GET").json()
            in_flight = sum(a.get("in_flight", 0) for a in stats.get("accounts", {}).values())
            total = sum(stats.get("status_totals", {}).values())
            if in_flight == 0 and total == last:
                return
            last = total
            await asyncio.sleep(1)

    def sim_reset(self, latency_ms: int = 0) -> None:
        self.stack.sim("/_sim/reset")
        if latency_ms:
            for route in MEMBER_WRITE_ROUTES:
                self.stack.sim("/_sim/controls", {"route": route, "latency_ms": latency_ms})

    def sim_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.stack.sim("/_sim/stats", method="GET").json()
        requests = stats.get("requests", {})
        writes = [requests.get(route, {}) for route in MEMBER_WRITE_ROUTES]
        peak = max((a.get("peak_in_flight", 0) for a in stats.get("accounts", {}).values()), default=0)
        return {
            # Requests that write members (one PUT, or one batch carrying many), and the members they wrote.
            "put_total": sum(sum(counts.values()) for counts in writes),
            "put_ok": sum(n for counts in writes for code, n in counts.items() if code.startswith("2")),
            "members_written": sum(stats.get("members_written", {}).values()),
            "responses_429": stats.get("responses_429", 0),
            "peak_in_flight": peak,
        }

    def sampler(self) -> ResourceSampler:
        pids = {k: v for k, v in self.stack.pids.items() if k not in ("loadgen", "accessplanit-sim")}
        return ResourceSampler(pids)

    async def tandem_run(self, spec: Spec, *, wait_s: float) -> tuple[dict[str, Any], list[Any], set[str]]:
        self.collector.clear()
        out = await self.load(spec)
        accepted = {r[3] for r in out["requests"] if 200 <= r[2] < 300 and r[3]}
        wait_s = min(wait_s, self.plan.wait_cap_s)
        await self.collector.wait_for(accepted, idle_timeout=15, hard_timeout=wait_s)
        finished = self.collector.finished(accepted)
        if len(finished) < len(accepted):
            self.notes.append(
                f"Tandem {spec.mode} run ({spec.rate or spec.count or spec.burst_contacts}): {len(finished)} of "
                f"{len(accepted)} accepted changes finished within {wait_s:.0f} s of the last send; figures are "
                "over those."
            )
        return out, finished, accepted

    async def drain(self, cap_s: float = 300) -> None:
        """Wait until mapper and writer have committed everything: no phase measures the previous one's tail."""
        deadline = time.monotonic() + cap_s
        behind = await lag(self.stack.kafka, self.stack.groups)
        while behind and time.monotonic() < deadline:
            await asyncio.sleep(1)
            behind = await lag(self.stack.kafka, self.stack.groups)
        if behind:
            self.notes.append(
                f"{behind} records were still unprocessed {cap_s:.0f} s after a phase; later phases shared the "
                "machine with them."
            )

    # --- phases ---

    async def tandem_throughput(self) -> dict[str, Any]:
        self.sim_reset()
        n = self.plan.throughput_events
        sampler = self.sampler()
        sampler.start()
        profiler = None
        if self.profile_dir is not None:
            names = ("ingest", "mapper", "writer", "mailchimp-sim")
            profiler = Profiler({k: v for k, v in self.stack.pids.items() if k in names}, self.profile_dir)
            await profiler.start(duration_s=self.plan.profile_seconds)
        out, finished, accepted = await self.tandem_run(
            self.spec("ingest", mode="backlog", count=n, concurrency=64, first_user_id=self.users(n)), wait_s=300
        )
        usage, busy = await sampler.stop()
        usage_dict = {k: asdict(v) for k, v in usage.items()}
        usage_dict["loadgen"] = _loadgen_usage(out, busy_window=(out["started_at"], out["finished_at"]))
        if profiler is not None:
            self.profile = await profiler.finish()
        sim = self.sim_stats()
        first = min((e.ingest_started for e in finished if e.ingest_started), default=0.0)
        last = max((e.finished for e in finished if e.finished), default=0.0)
        statuses: dict[str, int] = {}
        for e in finished:
            statuses[f"{e.finished_by}:{e.status}"] = statuses.get(f"{e.finished_by}:{e.status}", 0) + 1
        answered = [r for r in out["requests"] if r[2]]
        return {
            "events": n,
            "accepted": len(accepted),
            "finished": len(finished),
            "events_per_s": round(throughput(len(finished), first, last), 1),
            "accepted_per_s": round(_request_rate(answered), 1),
            "statuses": statuses,
            "answers": _answers(out),
            "mailchimp_requests_per_change": round(sim["put_total"] / len(accepted), 3) if accepted else None,
            "members_per_request": round(sim["members_written"] / sim["put_ok"], 2) if sim["put_ok"] else None,
            "responses_429": sim["responses_429"],
            "_resources": {"usage": usage_dict, "machine_busy_percent": busy, "events": len(finished)},
        }

    async def tandem_latency(self, rate: int) -> dict[str, Any]:
        self.sim_reset()
        seconds = self.plan.rate_seconds[rate]
        n = int(rate * seconds)
        sampler = self.sampler()
        sampler.start()
        out, finished, accepted = await self.tandem_run(
            self.spec("ingest", mode="rate", rate=rate, duration_s=seconds, first_user_id=self.users(n)), wait_s=120
        )
        usage, busy = await sampler.stop()
        usage_dict = {k: asdict(v) for k, v in usage.items()}
        usage_dict["loadgen"] = _loadgen_usage(out, busy_window=(out["started_at"], out["finished_at"]))
        row = _latency_row(
            sent=len(out["requests"]),
            latencies=[e.finished - e.ingest_started for e in finished if e.finished and e.ingest_started],
            first=min((e.ingest_started for e in finished if e.ingest_started), default=0.0),
            last=max((e.finished for e in finished if e.finished), default=0.0),
        )
        row["accepted"] = len(accepted)
        row["late_sends"] = out["late"]
        row["_resources"] = {"usage": usage_dict, "machine_busy_percent": busy, "events": len(finished)}
        return row

    async def simulator_ceiling(self) -> dict[str, Any]:
        """Member PUTs straight to the Mailchimp simulator, 10 at a time: the most any sync can write through it."""
        self.sim_reset()
        n = self.plan.throughput_events
        out = await self.load(
            Spec(
                base_url=self.stack.url("mailchimp_sim"),
                mode="direct",
                instance_id="",
                ap_secret="",
                mc_path_secret="",
                count=n,
                concurrency=10,
                first_user_id=self.users(n),
                mailchimp_api_key=DEMO_MAILCHIMP_API_KEY,
            )
        )
        ok = [r for r in out["requests"] if r[2] == 200]
        return {
            "events": n,
            "finished": len(ok),
            "events_per_s": round(_request_rate(ok), 1),
            "accepted_per_s": None,
            "answers": _answers(out),
        }

    async def naive_throughput(self) -> dict[str, Any]:
        self.sim_reset()
        n = self.plan.throughput_events
        out = await self.load(self.spec(NAIVE, mode="backlog", count=n, concurrency=64, first_user_id=self.users(n)))
        sim = self.sim_stats()
        ok = [r for r in out["requests"] if r[2] == 200]
        return {
            "events": n,
            "finished": len(ok),
            "events_per_s": round(_request_rate(ok), 1),
            "accepted_per_s": round(_request_rate(ok), 1),
            "answers": _answers(out),
            "mailchimp_requests_per_change": round(sim["put_total"] / n, 3),
            "responses_429": sim["responses_429"],
        }

    async def naive_latency(self, rate: int) -> dict[str, Any]:
        self.sim_reset()
        seconds = self.plan.rate_seconds[rate]
        n = int(rate * seconds)
        out = await self.load(self.spec(NAIVE, mode="rate", rate=rate, duration_s=seconds, first_user_id=self.users(n)))
        ok = [r for r in out["requests"] if r[2] == 200]
        row = _latency_row(
            sent=len(out["requests"]),
            latencies=[r[1] for r in ok],
            first=min((r[0] for r in ok), default=0.0),
            last=max((r[0] + r[1] for r in ok), default=0.0),
        )
        row["late_sends"] = out["late"]
        row["answers"] = _answers(out)
        return row

    async def raw_kafka(self, count: int, rate: float, sizes: dict[str, int]) -> dict[str, Any]:
        group = f"bench-raw-{uuid.uuid4().hex[:8]}"
        sink_out = self.work / f"sink-{group}.json"
        base = [sys.executable, "-m", "tandem_bench.rawkafka"]
        boot = ["--bootstrap", self.stack.kafka]
        relay = await _start_ready([*base, "relay", *boot, "--size", str(sizes["command"]), "--group", f"{group}-r"])
        sink = await _start_ready(
            [*base, "sink", *boot, "--count", str(count), "--group", f"{group}-s", "--out", str(sink_out)]
        )
        producer = await _start_ready(
            [*base, "produce", *boot, "--count", str(count), "--size", str(sizes["change"]), "--rate", str(rate)]
        )
        try:
            await asyncio.wait_for(producer.wait(), timeout=300)
            await asyncio.wait_for(sink.wait(), timeout=300)
        finally:
            for proc in (producer, sink, relay):
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(proc.wait(), timeout=30)
        received = orjson.loads(sink_out.read_bytes()) if sink_out.exists() else []
        first = min((s for s, _ in received), default=0.0)
        last = max((r for _, r in received), default=0.0)
        return {
            "events": count,
            "finished": len(received),
            "latencies": [r - s for s, r in received],
            "first": first,
            "last": last,
        }

    async def raw_throughput(self, sizes: dict[str, int]) -> dict[str, Any]:
        run = await self.raw_kafka(self.plan.raw_events, 0, sizes)
        return {
            "events": run["events"],
            "finished": run["finished"],
            "events_per_s": round(throughput(run["finished"], run["first"], run["last"]), 1),
            "accepted_per_s": None,
        }

    async def raw_latency(self, rate: int, sizes: dict[str, int]) -> dict[str, Any]:
        n = int(rate * self.plan.rate_seconds[rate])
        run = await self.raw_kafka(n, rate, sizes)
        return _latency_row(sent=n, latencies=run["latencies"], first=run["first"], last=run["last"])

    async def tandem_budget(self) -> dict[str, Any]:
        """The writer drains a backlog of commands already waiting for it (it is stopped while they are sent and
        mapped, as after an outage or a pause): the connection budget is what limits it then, not the rate at which
        changes arrive."""
        self.sim_reset(latency_ms=int(BUDGET_LATENCY_S * 1000))
        n = self.plan.budget_events
        writer = self.stack.pids["writer"]
        # Well inside the writer's session timeout (10 s), so it keeps its partitions: no rebalance in the measure.
        os.kill(writer, signal.SIGSTOP)
        try:
            self.collector.clear()
            out = await self.load(
                self.spec("ingest", mode="backlog", count=n, concurrency=64, first_user_id=self.users(n))
            )
            mapper_group = {g: t for g, t in self.stack.groups.items() if t == CHANGES}
            for _ in range(30):  # every change mapped into a command, or 6 s, whichever comes first
                if not await lag(self.stack.kafka, mapper_group):
                    break
                await asyncio.sleep(0.2)
        finally:
            os.kill(writer, signal.SIGCONT)
        accepted = {r[3] for r in out["requests"] if 200 <= r[2] < 300 and r[3]}
        wait_s = min(self.plan.budget_wait_s, self.plan.wait_cap_s)
        await self.collector.wait_for(accepted, idle_timeout=15, hard_timeout=wait_s)
        finished = self.collector.finished(accepted)
        sim = self.sim_stats()
        writer_done = sorted(e.finished for e in finished if e.finished_by == "writer" and e.finished)
        rate = _drain_rate(sim["put_ok"], writer_done)
        return {
            "changes": len(accepted),
            "finished": len(finished),
            "successful_writes": sim["put_ok"],
            "writes_per_s": round(rate, 2),
            "budget_use": round(budget_use(rate, BUDGET_LATENCY_S), 4),
            "members_written": sim["members_written"],
            "members_per_s": round(_drain_rate(sim["members_written"], writer_done), 1),
            "responses_429": sim["responses_429"],
            "peak_in_flight": sim["peak_in_flight"],
            "answers": _answers(out),
        }

    @contextlib.asynccontextmanager
    async def writer_env(self, extra: dict[str, str]) -> Any:
        """The writer restarted with `extra` in its environment for the block, then restarted as it was."""
        stack = self.stack.stack
        spec = next(s.spec for s in stack.running if s.spec.name == "writer")
        base = dict(stack.env)

        async def restart(env: dict[str, str]) -> None:
            await asyncio.to_thread(stack.stop, "writer")
            stack.env = env
            try:
                service = await asyncio.to_thread(stack.start, spec)
            finally:
                stack.env = base
            self.stack.pids["writer"] = service.pid
            await asyncio.sleep(3)  # healthy is not yet assigned: let it rejoin the group and get its partitions

        await restart({**base, **extra})
        try:
            yield
        finally:
            await restart(base)

    async def naive_budget(self) -> dict[str, Any]:
        self.sim_reset(latency_ms=int(BUDGET_LATENCY_S * 1000))
        n = self.plan.budget_events
        out = await self.load(self.spec(NAIVE, mode="backlog", count=n, concurrency=64, first_user_id=self.users(n)))
        sim = self.sim_stats()
        done = sorted(r[0] + r[1] for r in out["requests"] if r[2] == 200)
        rate = _drain_rate(sim["put_ok"], done)
        return {
            "changes": n,
            "successful_writes": sim["put_ok"],
            "writes_per_s": round(rate, 2),
            "budget_use": round(budget_use(rate, BUDGET_LATENCY_S), 4),
            "responses_429": sim["responses_429"],
            "peak_in_flight": sim["peak_in_flight"],
            "answers": _answers(out),
            "lost_changes": n - sim["put_ok"],
        }

    async def burst(self, service: str, *, spacing_ms: float, latency_ms: int) -> dict[str, Any]:
        """`burst_contacts` contacts, each updated 10 times in a row `spacing_ms` apart (0: back to back, each
        delivery sent once the previous one was answered, as a vendor's bulk edit fires them)."""
        self.sim_reset(latency_ms=latency_ms)
        contacts, updates = self.plan.burst_contacts, 10
        first = self.users(contacts)
        spec = self.spec(
            service,
            mode="burst",
            burst_contacts=contacts,
            burst_updates=updates,
            burst_spacing_ms=spacing_ms,
            first_user_id=first,
        )
        if service == NAIVE:
            out = await self.load(spec)
        else:
            out, _, _ = await self.tandem_run(spec, wait_s=60)
        sim = self.sim_stats()
        final_ok = 0
        async with httpx.AsyncClient(timeout=10) as client:
            for user_id in range(first, first + contacts):
                url = f"{self.stack.url('mailchimp_sim')}/3.0/lists/{AUDIENCE_ID}/members/"
                got = await client.get(url + subscriber_hash(email_of(user_id)), auth=("b", DEMO_MAILCHIMP_API_KEY))
                if got.status_code == 200 and got.json()["merge_fields"].get("FNAME") == f"Forename{updates}":
                    final_ok += 1
        sent = sorted(r[0] for r in out["requests"])
        return {
            "contacts": contacts,
            "updates": updates,
            "spacing_ms": spacing_ms,
            "simulator_latency_ms": latency_ms,
            # Contacts are updated side by side, each one's updates in sequence: a burst lasts the whole run.
            "burst_span_ms": round(1000 * (sent[-1] - sent[0]), 1) if sent else None,
            # A contact carried in a batch subscribe is written once by it, as by a PUT of its own.
            "mailchimp_writes": sim["members_written"],
            "mailchimp_requests": sim["put_total"],
            "writes_per_contact": round(sim["members_written"] / contacts, 2),
            "final_state_ok": final_ok,
            "final_state_is_last_update": final_ok == contacts,
            "answers": _answers(out),
        }

    async def mailchimp_webhooks(self) -> dict[str, Any] | None:
        probe = self.spec("ingest", mode="rate", rate=1, duration_s=1, mailchimp_share=1.0, first_user_id=1)
        out = await self.load(probe)
        status = out["requests"][0][2] if out["requests"] else 0
        if status == 404:
            self.notes.append("Mailchimp webhooks: ingest answers 404 on this commit (issue 3 not merged yet).")
            return None
        self.sim_reset()
        rate, seconds = 200, self.plan.mailchimp_seconds
        n = int(rate * seconds)
        out, finished, accepted = await self.tandem_run(
            self.spec(
                "ingest", mode="rate", rate=rate, duration_s=seconds, mailchimp_share=0.5, first_user_id=self.users(n)
            ),
            wait_s=60,
        )
        by: dict[str, int] = {}
        for e in finished:
            by[f"{e.finished_by}:{e.status}"] = by.get(f"{e.finished_by}:{e.status}", 0) + 1
        summary = summarize_latencies(
            e.finished - e.ingest_started for e in finished if e.finished and e.ingest_started
        )
        return {
            "rate": rate,
            "duration_s": seconds,
            "mailchimp_share": 0.5,
            "answers": _answers(out),
            "accepted": len(accepted),
            "finished": len(finished),
            "finished_by": by,
            **(summary.as_dict() if summary else {}),
        }

    async def unsigned_import(self) -> dict[str, Any]:
        """An import in accessplanit on the default, unsigned path: users created through the API, each announced by
        the simulator's own unsigned webhook. Ingest reads announced users back within the instance's re-read
        allowance and leaves the rest to the catch-up poll, a page of users per request (`tandem_ingest.catch_up`).
        Figures: accessplanit requests spent per imported user, and how long until all are Mailchimp members."""
        n = self.plan.import_users
        instance = self.stack.import_instance
        self.sim_reset()
        admin = {"Authorization": f"Bearer {DEMO_ACCESSPLANIT_ADMIN_KEY}"}
        async with httpx.AsyncClient(base_url=self.stack.url("accessplanit_sim"), timeout=30) as ap:
            (await ap.post("/_sim/reset")).raise_for_status()
            # The creates stand for an import inside the platform (a CSV upload), which spends no API requests: they
            # are counted on their own credential, so the integration's key has its documented 5,000 an hour.
            (await ap.post("/_sim/controls", json={"rate_limit_scope": "credential"})).raise_for_status()
            target = accessplanit_webhook_url(self.stack.url("ingest"), instance.id)
            webhook = {"Module": "User", "Events": ["created", "updated", "deleted"], "TargetUrl": target}
            (await ap.post("/api/v2/Webhook", json=webhook, headers=admin)).raise_for_status()
            reads_before = await _user_reads(ap)
            members_before = await self._audience_size()
            started = time.monotonic()
            slots = asyncio.Semaphore(16)

            async def create(i: int) -> None:
                user = {"Forenames": "Imported", "Surname": f"User {i}", "Email": f"import-{i}@example.com"}
                async with slots:
                    created = await ap.post("/api/v2/User", json={**user, "MainCompanyID": "2"}, headers=admin)
                    created.raise_for_status()

            await asyncio.gather(*(create(i) for i in range(n)))
            created_s = time.monotonic() - started
            # Until every user is a member, or nothing moved for 30 s (the poller's interval is 60 s: a deferral
            # left behind by a missed wake would show as a stall, which is what this phase must catch).
            synced, progressed = 0, time.monotonic()
            while synced < n and time.monotonic() - progressed < 30:
                await asyncio.sleep(0.5)
                now_synced = await self._audience_size() - members_before
                if now_synced > synced:
                    synced, progressed = now_synced, time.monotonic()
            synced_s = progressed - started
            reads = await _user_reads(ap) - reads_before
        return {
            "users": n,
            "created_in_s": round(created_s, 1),
            "synced": synced,
            "synced_in_s": round(synced_s, 1),
            "users_per_s": round(synced / synced_s, 1) if synced_s else None,
            "accessplanit_reads": reads,
            "reads_per_user": round(reads / n, 3) if n else None,
        }

    async def _audience_size(self) -> int:
        auth = ("any", DEMO_MAILCHIMP_API_KEY)
        url = f"{self.stack.url('mailchimp_sim')}/3.0/lists/{AUDIENCE_ID}/members"
        async with httpx.AsyncClient(timeout=30, auth=auth) as mc:
            response = await mc.get(url, params={"count": 1, "fields": "total_items"})
        response.raise_for_status()
        return int(response.json()["total_items"])


async def _user_reads(ap: httpx.AsyncClient) -> int:
    """`GET /User` requests the accessplanit simulator has answered (reads by filter and pages alike)."""
    rows = (await ap.get("/_sim/stats")).json()["requests"]
    return sum(r["count"] for r in rows if r["method"] == "GET" and r["route"] == "/api/v2/User")


def _loadgen_usage(out: dict[str, Any], *, busy_window: tuple[float, float]) -> dict[str, float]:
    """The load generator reports its own CPU time; its memory is not sampled (it is not a service)."""
    wall = busy_window[1] - busy_window[0]
    cpu_s = out.get("cpu_s", 0.0)
    return {"cpu_percent": round(cpu_percent(cpu_s, wall), 1), "rss_peak_mb": 0.0, "cpu_s": round(cpu_s, 3)}


def _answers(out: dict[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in out["requests"]:
        counts[str(r[2])] = counts.get(str(r[2]), 0) + 1
    for name, n in out.get("errors", {}).items():
        counts[name] = n
    return counts


def _request_rate(requests: list[Any]) -> float:
    if not requests:
        return 0.0
    return throughput(len(requests), min(r[0] for r in requests), max(r[0] + r[1] for r in requests))


def _drain_rate(writes: int, finishes: list[float]) -> float:
    """Writes per second over the window the writes finished in, counting the first request's own latency."""
    if not finishes or writes == 0:
        return 0.0
    return throughput(writes, finishes[0] - BUDGET_LATENCY_S, finishes[-1])


def _latency_row(*, sent: int, latencies: list[float], first: float, last: float) -> dict[str, Any]:
    summary = summarize_latencies(latencies)
    row: dict[str, Any] = {"sent": sent, "finished": len(latencies)}
    row["achieved_per_s"] = round(throughput(len(latencies), first, last), 1)
    if summary:
        row.update(summary.as_dict())
    return row


async def _start_ready(argv: list[str]) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout=90)
    if line.strip() != b"READY":
        raise RuntimeError(f"{argv[3]} did not start: {line!r}")
    return proc


def message_sizes() -> dict[str, int]:
    """Bytes of a real ChangeEvent and SyncCommand as Tandem puts them on Kafka, for the raw ceiling to copy."""
    delivery = accessplanit_update(
        instance_id="bench-sizes", secret="x", user_id=1_000_000, version=1, updated=Clock().next(), now=0, sequence=1
    )
    event = normalize_webhook(
        instance_id="bench-sizes",
        method="PUT",
        body=orjson.loads(delivery.body),
        execution_id=uuid.uuid4().hex,
        received_at=utcnow(),
    )
    from tandem_bench.stack import bench_instance
    from tandem_devstack.stack import Ports

    instance = bench_instance(Ports(), "bench-sizes")
    decision = decide(event, instance, Knowledge(), command_id=uuid.uuid4().hex, now=utcnow())
    assert decision.command is not None
    return {"change": len(event.model_dump_json()), "command": len(decision.command.model_dump_json())}


def git_info() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO_ROOT).stdout.strip()

    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


def _pop_resources(row: dict[str, Any]) -> dict[str, Any] | None:
    value: dict[str, Any] | None = row.pop("_resources", None)
    return value


PHASE_GROUPS = ("references", "throughput", "latency", "budget", "burst", "mailchimp", "import", "reconcile")


async def _references(bench: Bench, plan: Plan, step: Any, results: dict[str, Any], sizes: dict[str, int]) -> None:
    raw, naive = results["raw_kafka"], results["naive"]
    step("raw Kafka ceiling throughput")
    raw["throughput"] = await bench.raw_throughput(sizes)
    step("Mailchimp simulator ceiling")
    results["mailchimp_sim"] = {"throughput": await bench.simulator_ceiling()}
    step("naive throughput")
    naive["throughput"] = await bench.naive_throughput()
    await bench.sim_quiet()
    step("naive budget and bursts")
    naive["budget"] = await bench.naive_budget()
    await bench.sim_quiet()
    naive["burst"] = await bench.burst(NAIVE, spacing_ms=0, latency_ms=BURST_LATENCY_MS)
    naive["burst_spaced"] = await bench.burst(NAIVE, spacing_ms=50, latency_ms=0)
    await bench.sim_quiet()
    # Rates in increasing order: the naive sync falls over at the highest and takes a while to recover.
    for rate in RATES:
        step(f"reference latency at {rate}/s")
        raw["latency"][str(rate)] = await bench.raw_latency(rate, sizes)
        if rate in plan.naive_rates:
            naive["latency"][str(rate)] = await bench.naive_latency(rate)
            await bench.sim_quiet()


async def run_phases(
    stack: BenchStack,
    plan: Plan,
    work: Path,
    results: dict[str, Any],
    profile_dir: Path | None,
    groups: tuple[str, ...] = PHASE_GROUPS,
) -> None:
    bench = Bench(stack, plan, work)
    bench.profile_dir = profile_dir
    await bench.collector.start()
    sizes = message_sizes()
    tandem: dict[str, Any] = {"latency": {}}
    raw: dict[str, Any] = {"latency": {}, "message_sizes": sizes}
    naive: dict[str, Any] = {"latency": {}}
    results.update(tandem=tandem, raw_kafka=raw, naive=naive)
    try:
        step = _progress(plan)
        # References first, on an idle pipeline; then Tandem, draining between phases.
        if "references" in groups:
            await _references(bench, plan, step, results, sizes)
        if "throughput" in groups:
            step("Tandem throughput")
            tandem["throughput"] = await bench.tandem_throughput()
            tandem["resources"] = _pop_resources(tandem["throughput"])
            results["profile"] = bench.profile
        if "latency" in groups:
            for rate in RATES:
                await bench.drain()
                step(f"Tandem latency at {rate}/s")
                row = await bench.tandem_latency(rate)
                resources = _pop_resources(row)
                if rate == 200:
                    tandem["resources_200"] = resources
                tandem["latency"][str(rate)] = row
        if "budget" in groups:
            await bench.drain()
            step("Tandem Mailchimp budget at 150 ms")
            tandem["budget"] = await bench.tandem_budget()
            await bench.drain()
            step("Tandem Mailchimp budget at 150 ms, one member per request")
            # The same backlog with batching off: each change its own PUT, as every write was before batching;
            # then the ten connections are the bound, and this shows the writer filling them without a 429.
            async with bench.writer_env({"TANDEM_WRITER_MAILCHIMP_BATCH_MAX": "1"}):
                tandem["budget_per_member"] = await bench.tandem_budget()
        if "burst" in groups:
            await bench.drain()
            step("Tandem bursts")
            tandem["burst"] = await bench.burst("ingest", spacing_ms=0, latency_ms=BURST_LATENCY_MS)
            await bench.drain()
            tandem["burst_spaced"] = await bench.burst("ingest", spacing_ms=50, latency_ms=0)
        if "mailchimp" in groups:
            await bench.drain()
            step("Tandem with Mailchimp webhooks")
            tandem["mailchimp_webhooks"] = await bench.mailchimp_webhooks()
        if "import" in groups:
            await bench.drain()
            step(f"Tandem: an accessplanit import of {plan.import_users} users, unsigned webhooks")
            tandem["unsigned_import"] = await bench.unsigned_import()
    finally:
        results["notes"] = bench.notes
        await bench.collector.stop()


def _progress(plan: Plan) -> Any:
    t0 = time.monotonic()

    def step(name: str) -> None:
        print(f"bench [{plan.mode}] {time.monotonic() - t0:6.1f}s  {name}", flush=True)

    return step


def load_history() -> list[dict[str, Any]]:
    runs = []
    for path in sorted(RESULTS.glob("20*.json")):
        with contextlib.suppress(ValueError, OSError):
            runs.append(orjson.loads(path.read_bytes()))
    return sorted(runs, key=lambda r: r.get("started_at", ""))


def save(results: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    history = load_history()
    results["ratios"] = report.ratios(results)
    results["targets"] = [asdict(t) for t in report.judge(results)]
    stamp = results["started_at"].replace(":", "").replace("-", "")
    markdown = report.render(results, history)
    data = orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    (RESULTS / f"{stamp}.json").write_bytes(data)
    (RESULTS / f"{stamp}.md").write_text(markdown)
    (RESULTS / "latest.json").write_bytes(data)
    (RESULTS / "latest.md").write_text(markdown)
    return RESULTS / "latest.md"


def main(quick: bool, keep_work: bool = False, profile: bool = False, groups: tuple[str, ...] = PHASE_GROUPS) -> int:
    """Every phase group writes the report and joins the history; a subset (`--only`) goes to partial.md."""
    plan = Plan.quick() if quick else Plan.full()
    started = datetime.now(UTC)
    results: dict[str, Any] = {
        "started_at": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "mode": plan.mode,
        "git": git_info(),
        "machine": machine(),
        "load": {"before": uptime_line(), "loadavg_before": load_average()},
    }
    work = Path(tempfile.mkdtemp(prefix="tandem-bench-"))
    t0 = time.monotonic()
    try:
        with bench_stack(work) as stack:
            profile_dir = RESULTS / "profiles" / results["started_at"].replace(":", "") if profile else None
            try:
                asyncio.run(run_phases(stack, plan, work, results, profile_dir, groups))
                if "reconcile" in groups:
                    # On the same Kafka and Redis, with a stack of its own: the services above are stopped first.
                    stack.stack.stop()
                    print(f"bench [{plan.mode}] reconciliation: {plan.reconcile_users:,} users", flush=True)
                    infra = Infra(stack.kafka, stack.redis, kafka_started_here=False)
                    results["reconcile"] = reconcile.run_on(infra, plan.reconcile_users, work / "reconcile")
            except Exception as exc:  # a phase that broke still leaves the figures of the phases before it
                results.setdefault("notes", []).append(f"Run aborted in a phase: {type(exc).__name__}: {exc}")
                results["aborted"] = True
    finally:
        results["duration_s"] = round(time.monotonic() - t0, 1)
        results["load"].update(after=uptime_line(), loadavg_after=load_average())
        if not keep_work:
            shutil.rmtree(work, ignore_errors=True)
    if set(groups) != set(PHASE_GROUPS):
        results["mode"] = f"{plan.mode}, only {', '.join(groups)}"
        path = RESULTS / "partial.md"
        path.write_text(report.render(results, []))
    else:
        path = save(results)
    print(path.read_text())
    copy = "" if path.name == "partial.md" else f" and a timestamped copy in {RESULTS}"
    print(f"bench: wrote {path}{copy} ({results['duration_s']} s)")
    return 0
