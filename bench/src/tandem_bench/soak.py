"""The soak phase (issue 15): N contacts edited at random on both sides, through the simulators' APIs as people and
API clients do, at several rates; once the stack is quiescent, both sides must agree on every contact.

`make bench BENCH_ARGS="--soak"` (`--quick`: shorter). Figures per rate: edits made, contacts diverged (target 0),
contacts ending on an edit provably older than another of theirs (target 0; "provably": more than Mailchimp's one
second of clock uncertainty earlier, docs/convergence.md), time from a contact's last edit until both sides held its
final value for good (p50/p99), and the writer's authoritative reads per edit (bound 0.2). Written to
bench/results/<stamp>-soak.{md,json}.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from tandem_bench.stack import bench_infra, bench_instance, lag, pipeline_env
from tandem_bench.stats import percentile
from tandem_devstack import demo
from tandem_devstack.processes import free_port
from tandem_devstack.stack import (
    DEMO_ACCESSPLANIT_ADMIN_KEY,
    DEMO_MAILCHIMP_API_KEY,
    DEMO_MAILCHIMP_AUDIENCE,
    Ports,
    Stack,
    service_specs,
)
from tandem_shared.contracts import InstanceConfig, subscriber_hash
from tandem_shared.contracts.topics import COMMANDS, COMMANDS_RETRY, TRACE
from tandem_shared.instance_store import put_instance, remove_instance
from tandem_shared.kafka import KafkaConnection, caught_up, partitions_of
from tandem_shared.redis.client import connect_url
from tandem_shared.redis.keys import poller_deferred_key

RESULTS = Path(__file__).resolve().parents[2] / "results"
UNCERTAINTY_S = 1.0
# How the writer's trace says a repair waited the whole while for a write that never landed (a stale pending mark).
STALE_WAIT = "still in flight after"
ADMIN = {"Authorization": f"Bearer {DEMO_ACCESSPLANIT_ADMIN_KEY}"}
MC_AUTH = ("any", DEMO_MAILCHIMP_API_KEY)


@dataclass
class SoakStack:
    stack: Stack
    ports: Ports
    instance: InstanceConfig
    kafka: str
    groups: dict[str, str]
    redis: str

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{getattr(self.ports, service)}"


@contextmanager
def soak_stack(data_dir: Path) -> Iterator[SoakStack]:
    """Tandem with both simulators' webhooks registered (the default, unsigned accessplanit path)."""
    with bench_infra() as own:
        ports = Ports(**{f.name: free_port() for f in fields(Ports)})
        suffix = uuid.uuid4().hex[:8]
        instance = bench_instance(ports, f"soak-{suffix}", signed=False)
        connection = KafkaConnection(bootstrap_servers=own.kafka, client_id="tandem-soak")
        asyncio.run(put_instance(connection, instance))
        # The soak's own observer reads every contact on both sides several times a second: on the documented 5,000
        # requests an hour it would spend the tenant's budget Tandem reads back with. The soak measures convergence,
        # not the accessplanit budget (the budget phase does that).
        env, groups = pipeline_env(
            own.kafka, own.redis, ports, data_dir, suffix, {"ACCESSPLANIT_SIM_RATE_LIMIT_PER_WINDOW": "100000000"}
        )
        stack = Stack(env=env, log_dir=data_dir / "logs")
        try:
            for spec in service_specs(ports):
                if spec.name != "console":
                    stack.start(spec)
            endpoints = demo.Endpoints.from_env(env)
            demo.register_accessplanit_webhook(endpoints, instance.id)
            instance = demo.register_mailchimp_webhook(endpoints, own.kafka, data_dir / "secrets", instance)
            yield SoakStack(stack, ports, instance, own.kafka, groups, own.redis)
        finally:
            stack.stop()
            asyncio.run(remove_instance(connection, own.redis, instance.id))


@dataclass
class Contact:
    email: str
    user_id: str


@dataclass
class Edit:
    contact: int
    side: str
    value: str
    started: float
    ended: float


class Soak:
    def __init__(self, stack: SoakStack, client: httpx.AsyncClient) -> None:
        self.stack = stack
        self.client = client
        self.contacts: list[Contact] = []

    def member_url(self, contact: Contact) -> str:
        return (
            f"{self.stack.url('mailchimp_sim')}/3.0/lists/{DEMO_MAILCHIMP_AUDIENCE}/members/"
            f"{subscriber_hash(contact.email)}"
        )

    def user_url(self, contact: Contact) -> str:
        return f"{self.stack.url('accessplanit_sim')}/api/v2/User/{contact.user_id}"

    async def sides(self, contact: Contact) -> tuple[str | None, str | None]:
        member = await self.client.get(self.member_url(contact), auth=MC_AUTH)
        user = await self.client.get(self.user_url(contact), headers=ADMIN)
        in_mc = member.json()["merge_fields"].get("FNAME") if member.status_code == 200 else None
        in_ap = user.json().get("Forenames") if user.status_code == 200 else None
        return in_mc, in_ap

    async def create(self, count: int) -> None:
        for n in range(count):
            email = f"soak{n}.{uuid.uuid4().hex[:8]}@example.com"
            created = await self.client.post(
                f"{self.stack.url('accessplanit_sim')}/api/v2/User",
                headers=ADMIN,
                json={"Forenames": "Start", "Surname": f"Soak{n}", "Email": email, "MainCompanyID": "2"},
            )
            created.raise_for_status()
            self.contacts.append(Contact(email, str(created.json()["ID"])))
        await self.quiescent()

    async def trace_end(self) -> dict[Any, int]:
        connection = KafkaConnection(bootstrap_servers=self.stack.kafka, client_id="tandem-soak")
        consumer = connection.consumer(enable_auto_commit=False)
        await consumer.start()
        try:
            return dict(await consumer.end_offsets(await partitions_of(connection, TRACE)))
        finally:
            await consumer.stop()

    async def quiescent(self, cap_s: float = 300) -> float:
        """Seconds until lag is zero everywhere (retry tiers included), no accessplanit delivery waits for the catch-up
        read (deferred beyond the re-read allowance: its edit is not an event yet) and nothing was traced for a
        second."""
        t0 = time.monotonic()
        writer_group = next(g for g, t in self.stack.groups.items() if t == COMMANDS)
        previous = None
        while time.monotonic() - t0 < cap_s:
            behind = await lag(self.stack.kafka, self.stack.groups)
            for topic in COMMANDS_RETRY:
                behind += await lag(self.stack.kafka, {writer_group: topic})
            behind += await deferred_users(self.stack.redis, self.stack.instance.id)
            traced = await self.trace_end()
            if behind == 0 and traced == previous:
                return time.monotonic() - t0
            previous = traced if behind == 0 else None
            await asyncio.sleep(1)
        raise RuntimeError(f"not quiescent within {cap_s:.0f} s")

    async def run_rate(self, rate: float, seconds: float, rng: random.Random) -> tuple[dict[str, Any], list[Any]]:
        """The rate's figures, and what explains each contact that diverged or ended on an older edit."""
        edits: list[Edit] = []
        observed: dict[int, list[tuple[float, tuple[str | None, str | None]]]] = {
            i: [] for i in range(len(self.contacts))
        }
        stop = asyncio.Event()

        async def watch() -> None:
            while not stop.is_set():
                for index, contact in enumerate(self.contacts):
                    observed[index].append((time.time(), await self.sides(contact)))
                await asyncio.sleep(0.5)

        since = time.time()
        watcher = asyncio.create_task(watch())
        tag = uuid.uuid4().hex[:5]
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await asyncio.sleep(rng.expovariate(rate))
            index = rng.randrange(len(self.contacts))
            contact, side = self.contacts[index], rng.choice(("ap", "mc"))
            value = f"S{tag}{len(edits)}"
            started = time.time()
            if side == "ap":
                response = await self.client.put(self.user_url(contact), headers=ADMIN, json={"Forenames": value})
            else:
                response = await self.client.patch(
                    self.member_url(contact), auth=MC_AUTH, json={"merge_fields": {"FNAME": value}}
                )
            response.raise_for_status()
            edits.append(Edit(index, side, value, started, time.time()))
        settle_s = await self.quiescent()
        stop.set()
        await watcher
        traces = await self.traces(since)
        user_ids = [c.user_id for c in self.contacts]
        row = figures(len(self.contacts), rate, seconds, edits, observed, traces, settle_s, user_ids)
        return row, self.explain(row, edits, observed, traces)

    def explain(
        self,
        row: dict[str, Any],
        edits: list[Edit],
        observed: dict[int, list[tuple[float, tuple[str | None, str | None]]]],
        traces: list[dict[str, Any]],
    ) -> list[dict[str, Any]]:
        """For each contact that diverged or ended on an older edit: its edit schedule on both sides, its trace
        records in order (decisions, rules, writes) and both sides' final values."""
        explained = []
        for index in sorted({*row["diverged_contacts"], *row["older_contacts"]}):
            contact = self.contacts[index]
            ours = [
                {
                    "side": e.side,
                    "value": e.value,
                    "started": _stamp(e.started),
                    "ended": _stamp(e.ended),
                }
                for e in edits
                if e.contact == index
            ]
            records = [
                {
                    "stage": t.get("stage"),
                    "flow": t.get("flow"),
                    "status": t.get("status"),
                    "execution_id": t.get("execution_id"),
                    "started_at": t.get("started_at"),
                    "finished_at": t.get("finished_at"),
                    "summary": t.get("summary"),
                    "logs": [line.get("message") for line in t.get("logs") or []],
                    "data_in": (t.get("output") or {}).get("data_in"),
                    "data_out": (t.get("output") or {}).get("data_out"),
                }
                for t in traces
                if (t.get("contact_email") or "").lower() == contact.email.lower()
                or t.get("accessplanit_user_id") == contact.user_id
            ]
            final_mc, final_ap = observed[index][-1][1] if observed[index] else (None, None)
            explained.append(
                {
                    "rate_per_s": row["rate_per_s"],
                    "contact": index,
                    "email": contact.email,
                    "accessplanit_user_id": contact.user_id,
                    "diverged": index in row["diverged_contacts"],
                    "final": {"mailchimp": final_mc, "accessplanit": final_ap},
                    "edits": ours,
                    "observed": [
                        {"at": _stamp(at), "mailchimp": mc, "accessplanit": ap}
                        for at, (mc, ap) in _changes(observed[index])
                    ],
                    "traces": sorted(records, key=lambda r: r["started_at"] or ""),
                }
            )
        return explained

    async def traces(self, since: float) -> list[dict[str, Any]]:
        """The instance's trace records of steps started after `since` (epoch seconds)."""
        connection = KafkaConnection(bootstrap_servers=self.stack.kafka, client_id="tandem-soak")
        consumer = connection.consumer(enable_auto_commit=False, auto_offset_reset="earliest")
        await consumer.start()
        try:
            partitions = await partitions_of(connection, TRACE)
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            end = await consumer.end_offsets(partitions)
            found = []
            after = datetime.fromtimestamp(since, UTC)
            while not await caught_up(consumer, end):
                batch = await consumer.getmany(*partitions, timeout_ms=500)
                for records in batch.values():
                    for record in records:
                        trace = orjson.loads(record.value)
                        if trace.get("instance_id") != self.stack.instance.id:
                            continue
                        if datetime.fromisoformat(trace["started_at"]) >= after:
                            found.append(trace)
            return found
        finally:
            await consumer.stop()


def _stamp(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%H:%M:%S.%f")[:-3]


def _changes(
    seen: list[tuple[float, tuple[str | None, str | None]]],
) -> list[tuple[float, tuple[str | None, str | None]]]:
    """The observations at which either side's value changed."""
    return [(at, pair) for n, (at, pair) in enumerate(seen) if n == 0 or pair != seen[n - 1][1]]


async def deferred_users(redis_url: str, instance_id: str) -> int:
    """accessplanit users whose delivery waits for the catch-up poll (tandem_ingest.catch_up)."""
    redis = connect_url(redis_url)
    try:
        return int(await redis.zcard(poller_deferred_key(instance_id)))
    finally:
        await redis.aclose()


def read_vendor(summary: str) -> str | None:
    """Which vendor a writer's trace says it re-read before the write (one read per command), if any: the wording of
    `tandem_writer.domain.source_check`, or of a read that failed (it spent a request too)."""
    lowered = summary.lower()
    return next((vendor for vendor in ("accessplanit", "mailchimp") if f"re-read from {vendor}" in lowered), None)


DEFERRED = "deferred to the catch-up read"


def _epoch(trace: dict[str, Any]) -> float | None:
    started = trace.get("started_at")
    return datetime.fromisoformat(started).timestamp() if isinstance(started, str) else None


def last_edit_kind(last: Edit, user_id: str | None, traces: list[dict[str, Any]]) -> str:
    """What a contact's last edit waited on before Tandem had it: "mailchimp" (its webhook), "accessplanit" (read
    back when its delivery arrived) or "accessplanit deferred" (its delivery deferred to the catch-up read, which
    comes round no sooner than the poller's wake interval, 5 s, after the previous round)."""
    if last.side == "mc":
        return "mailchimp"
    deferred = any(
        t.get("stage") == "ingest"
        and DEFERRED in (t.get("summary") or "")
        and t.get("accessplanit_user_id") == user_id
        and (at := _epoch(t)) is not None
        and last.started <= at <= last.ended + 1.0
        for t in traces
    )
    return "accessplanit deferred" if deferred else "accessplanit"


def figures(
    contacts: int,
    rate: float,
    seconds: float,
    edits: list[Edit],
    observed: dict[int, list[tuple[float, tuple[str | None, str | None]]]],
    traces: list[dict[str, Any]],
    settle_s: float,
    user_ids: Sequence[str] = (),
) -> dict[str, Any]:
    """`user_ids`: each contact's accessplanit user, to tell which last edits were deferred to the catch-up read."""
    diverged, older, convergence = [], [], []
    by_kind: dict[str, list[float]] = {}
    for index in range(contacts):
        ours = [e for e in edits if e.contact == index]
        if not ours:
            continue
        final_mc, final_ap = observed[index][-1][1] if observed[index] else (None, None)
        if final_mc != final_ap:
            diverged.append(index)
            continue
        final = next((e for e in ours if e.value == final_ap), None)
        if final is None or any(e.started > final.ended + UNCERTAINTY_S for e in ours):
            older.append(index)
        last = max(e.ended for e in ours)
        settled_at = None
        for at, pair in observed[index]:
            if at < last:
                continue
            if pair == (final_ap, final_ap):
                settled_at = settled_at or at
            else:
                settled_at = None
        if settled_at is not None:
            convergence.append(settled_at - last)
            final_edit = max(ours, key=lambda e: e.ended)
            user_id = user_ids[index] if index < len(user_ids) else None
            by_kind.setdefault(last_edit_kind(final_edit, user_id, traces), []).append(settled_at - last)
    writer = [t for t in traces if t.get("stage") in ("writer", "retry")]
    # Writes preceded by a re-read of a vendor, as the writer's trace records them, by vendor.
    reads_by_vendor = Counter(vendor for t in writer if (vendor := read_vendor(t.get("summary") or "")) is not None)
    reads = reads_by_vendor.total()
    # Decisions that wrote a change back to its own side (a repair), and repairs that waited in vain for a write
    # that was never going to land (a stale pending mark): each of those held a writer slot for the whole wait.
    write_backs = sum(t.get("stage") == "mapper" and "written back to" in (t.get("summary") or "") for t in traces)
    stale_waits = sum(STALE_WAIT in (t.get("summary") or "") for t in writer)
    return {
        "rate_per_s": rate,
        "seconds": seconds,
        "contacts": contacts,
        "edits": len(edits),
        "edits_accessplanit": sum(e.side == "ap" for e in edits),
        "edits_mailchimp": sum(e.side == "mc" for e in edits),
        "diverged": len(diverged),
        "diverged_contacts": diverged,
        "ended_on_older_edit": len(older),
        "older_contacts": older,
        "convergence_p50_s": round(percentile(convergence, 50), 2) if convergence else None,
        "convergence_p99_s": round(percentile(convergence, 99), 2) if convergence else None,
        "authoritative_reads": reads,
        "authoritative_reads_per_edit": round(reads / len(edits), 3) if edits else 0.0,
        "authoritative_reads_accessplanit": reads_by_vendor["accessplanit"],
        "authoritative_reads_mailchimp": reads_by_vendor["mailchimp"],
        "write_backs": write_backs,
        "write_backs_waited_in_vain": stale_waits,
        "quiescent_after_s": round(settle_s, 1),
        # Convergence by what the contact's last edit waited on (`last_edit_kind`): p50, p99, contacts.
        "convergence_by_last_edit": {
            kind: [round(percentile(times, 50), 2), round(percentile(times, 99), 2), len(times)]
            for kind, times in sorted(by_kind.items())
        },
    }


def render(results: dict[str, Any]) -> str:
    lines = [
        f"# Soak {results['started_at']} ({results['mode']})",
        "",
        f"{results['contacts']} contacts, random first-name edits on both sides through the simulators' APIs "
        "(exponential gaps at each rate); figures after the stack was quiescent (lag zero, retry tiers included, "
        "no delivery deferred to the catch-up read, nothing traced for a second). Targets: 0 diverged, 0 ended on "
        "an older edit, at most 0.2 authoritative reads per edit. Write-backs: changes also written back to their "
        "own side because Tandem's write of another value was in flight there (a repair); in brackets the times "
        "one was deferred because that write was still in flight after the writer's wait (docs/convergence.md).",
        "",
        "| rate /s | seconds | edits (ap/mc) | diverged | ended on older edit | convergence p50 / p99 s "
        "| authoritative reads (per edit; accessplanit/Mailchimp) | write-backs (waited in vain) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in results["rates"]:
        lines.append(
            f"| {row['rate_per_s']} | {row['seconds']} | {row['edits']} ({row['edits_accessplanit']}/"
            f"{row['edits_mailchimp']}) | {row['diverged']} | {row['ended_on_older_edit']} | "
            f"{row['convergence_p50_s']} / {row['convergence_p99_s']} | {row['authoritative_reads']} "
            f"({row['authoritative_reads_per_edit']}; {row.get('authoritative_reads_accessplanit', 0)}/"
            f"{row.get('authoritative_reads_mailchimp', 0)}) | {row['write_backs']} "
            f"({row['write_backs_waited_in_vain']}) |"
        )
    lines.append("")
    lines.append("Convergence p50 / p99 s (contacts) by what each contact's last edit waited on:")
    lines.append("")
    for row in results["rates"]:
        kinds = row.get("convergence_by_last_edit") or {}
        parts = [f"{kind} {p50} / {p99} ({n})" for kind, (p50, p99, n) in kinds.items()]
        lines.append(f"- {row['rate_per_s']}/s: {'; '.join(parts) or 'none converged'}")
    return "\n".join(lines) + "\n"


async def run(
    stack: SoakStack, *, contacts: int, rates: tuple[float, ...], seconds: float
) -> tuple[dict[str, Any], list[Any]]:
    rng = random.Random(15)
    # Idle connections dropped before uvicorn's 5 s keep-alive closes them: reusing one as it closes fails the request.
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(keepalive_expiry=2.0)) as client:
        soak = Soak(stack, client)
        await soak.create(contacts)
        rows, explained = [], []
        for rate in rates:
            print(f"soak: {rate}/s for {seconds:.0f} s", flush=True)
            row, why = await soak.run_rate(rate, seconds, rng)
            rows.append(row)
            explained.extend(why)
        return {"contacts": contacts, "rates": rows}, explained


DEFAULT_RATES = (2.0, 5.0, 10.0)


def main(quick: bool, rates: tuple[float, ...] = DEFAULT_RATES, seconds: float | None = None) -> int:
    """Writes bench/results/<stamp>-soak.{md,json}, and <stamp>-soak-diverged.json beside them when any contact
    diverged or ended on an older edit (what explains each one)."""
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    seconds = seconds or (30.0 if quick else 60.0)
    work = Path(tempfile.mkdtemp(prefix="tandem-soak-"))
    with soak_stack(work) as stack:
        figures, explained = asyncio.run(run(stack, contacts=12, rates=rates, seconds=seconds))
    results = {"started_at": started, "mode": "quick" if quick else "full", **figures}
    stamp = started.replace(":", "").replace("-", "")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stamp}-soak.json").write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    markdown = render(results)
    if explained:
        sidecar = RESULTS / f"{stamp}-soak-diverged.json"
        sidecar.write_bytes(orjson.dumps(explained, option=orjson.OPT_INDENT_2))
        markdown += f"\nWhat explains each contact that diverged or ended on an older edit: `{sidecar.name}`.\n"
    (RESULTS / f"{stamp}-soak.md").write_text(markdown)
    print(markdown)
    return 0
