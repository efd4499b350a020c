"""CPU time the Mailchimp simulator spends per member write, measured on the simulator's own process.

Starts ``python -m mailchimp_sim`` on a free loopback port with a throw-away data directory, warms it up, then sends
member PUTs (10 at a time, the shape of the bench's "Mailchimp simulator alone") and/or batch subscribes, and prints
the simulator process's CPU ms (user + system) per request and per member. CPU, not wall clock: the machine is
shared, so requests/s says little about the simulator itself.

    .venv/bin/python simulators/mailchimp/bench/cpu_per_request.py --puts 3000 --batches 30 --batch-size 100
"""

import argparse
import asyncio
import base64
import hashlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil

API_KEY = "tandemdemo0000000000000000000000-us1"
LIST_ID = "a1b2c3d4e5"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"bench:{API_KEY}".encode()).decode()}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _email(i: int) -> str:
    return f"cpu.bench.{i}@example.com"


def _member(i: int, version: int) -> dict[str, object]:
    # The body Tandem's writer sends (see bench/src/tandem_bench/payloads.py mailchimp_member_put).
    return {
        "email_address": _email(i),
        "status_if_new": "subscribed",
        "merge_fields": {"FNAME": f"Forename{version}", "LNAME": f"Surname{i}"},
    }


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def _puts(client: httpx.AsyncClient, first: int, count: int, version: int, concurrency: int) -> Counter[int]:
    ids = iter(range(first, first + count))
    codes: Counter[int] = Counter()

    async def worker() -> None:
        for i in ids:
            member_hash = hashlib.md5(_email(i).encode()).hexdigest()
            response = await client.put(f"/3.0/lists/{LIST_ID}/members/{member_hash}", json=_member(i, version))
            codes[response.status_code] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return codes


async def _batches(client: httpx.AsyncClient, first: int, batches: int, size: int, version: int) -> Counter[int]:
    codes: Counter[int] = Counter()
    for b in range(batches):
        start = first + b * size
        members = [_member(i, version) for i in range(start, start + size)]
        response = await client.post(f"/3.0/lists/{LIST_ID}", json={"members": members, "update_existing": True})
        codes[response.status_code] += 1
        if response.status_code == 200 and response.json()["error_count"]:
            raise SystemExit(f"batch errors: {response.json()['errors'][:3]}")
    return codes


async def _measure(args: argparse.Namespace, base_url: str, process: psutil.Process) -> None:
    async with httpx.AsyncClient(
        base_url=base_url, headers=AUTH, timeout=60, limits=httpx.Limits(max_connections=args.concurrency)
    ) as client:
        await _puts(client, 10_000_000, args.warmup, 1, args.concurrency)
        spy = None
        if args.py_spy:
            # Samples only the measured rounds; it pauses the process to sample, so CPU figures of a profiled run
            # are a little high.
            spy = await asyncio.create_subprocess_exec(
                *["py-spy", "record", "--format", "raw", "-o", args.py_spy, "-p", str(process.pid)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            await asyncio.sleep(1)
        if args.puts:
            before, started = _cpu_s(process), time.perf_counter()
            codes = await _puts(client, 0, args.puts, 1, args.concurrency)
            cpu, wall = _cpu_s(process) - before, time.perf_counter() - started
            _say(
                f"PUT (new members)      {args.puts} requests  {codes}  sim CPU {cpu * 1000 / args.puts:.3f} ms/request"
                f"  ({args.puts / wall:.0f}/s wall, shared machine)"
            )
            before = _cpu_s(process)
            codes = await _puts(client, 0, args.puts, 2, args.concurrency)
            cpu = _cpu_s(process) - before
            _say(
                f"PUT (changed members)  {args.puts} requests  {codes}  sim CPU {cpu * 1000 / args.puts:.3f} ms/request"
            )
        if args.batches:
            members = args.batches * args.batch_size
            for version, what in ((1, "new members"), (2, "changed members")):
                before = _cpu_s(process)
                codes = await _batches(client, 20_000_000, args.batches, args.batch_size, version)
                cpu = _cpu_s(process) - before
                _say(
                    f"batch subscribe ({what})  {args.batches} x {args.batch_size}  {codes}  "
                    f"sim CPU {cpu * 1000 / args.batches:.2f} ms/request, {cpu * 1000 / members:.3f} ms/member"
                )
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            await asyncio.wait_for(spy.wait(), timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--puts", type=int, default=3000, help="member PUTs per measured round (0: none)")
    parser.add_argument("--batches", type=int, default=20, help="batch subscribe calls (0: none)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--py-spy", metavar="FILE", help="write py-spy collapsed stacks of the measured rounds here")
    args = parser.parse_args()
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="mailchimp-sim-cpu-") as data_dir:
        env = {**os.environ, "MAILCHIMP_SIM_PORT": str(port), "MAILCHIMP_SIM_DATA_DIR": str(Path(data_dir))}
        sim = subprocess.Popen(
            [sys.executable, "-m", "mailchimp_sim"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            base_url = f"http://127.0.0.1:{port}"
            for _ in range(200):
                try:
                    if httpx.get(f"{base_url}/_sim/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
            else:
                raise SystemExit("simulator did not start")
            asyncio.run(_measure(args, base_url, psutil.Process(sim.pid)))
        finally:
            sim.terminate()
            sim.wait(timeout=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
