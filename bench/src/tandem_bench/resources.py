"""CPU and memory per process over a phase (psutil), and a description of the machine the run was on."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import subprocess
from dataclasses import dataclass, field
from typing import Any

import psutil

from tandem_bench.stats import cpu_percent


def pid_listening_on(port: int) -> int | None:
    """The process serving a loopback port (a broker or Redis reused from an earlier start)."""
    with contextlib.suppress(psutil.Error):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return int(conn.pid)
    return None


def _tree_cpu(proc: psutil.Process) -> float:
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


@dataclass
class Usage:
    cpu_percent: float
    rss_peak_mb: float
    cpu_s: float = 0.0


@dataclass
class ResourceSampler:
    """Samples each named process tree every `interval` s between `start()` and `stop()`."""

    pids: dict[str, int]
    interval: float = 0.5
    _procs: dict[str, psutil.Process] = field(default_factory=dict)
    _cpu0: dict[str, float] = field(default_factory=dict)
    _peak: dict[str, int] = field(default_factory=dict)
    _t0: float = 0.0
    _machine0: Any = None
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._procs = {}
        for name, pid in self.pids.items():
            with contextlib.suppress(psutil.Error):
                self._procs[name] = psutil.Process(pid)
        self._cpu0 = {name: _tree_cpu(p) for name, p in self._procs.items()}
        self._peak = {name: _tree_rss(p) for name, p in self._procs.items()}
        self._t0 = loop.time()
        self._machine0 = psutil.cpu_times()
        self._task = asyncio.create_task(self._sample())

    async def _sample(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            for name, proc in self._procs.items():
                self._peak[name] = max(self._peak.get(name, 0), _tree_rss(proc))

    async def stop(self) -> tuple[dict[str, Usage], float]:
        """Per-process usage, and the machine's busy share (0..100 % of all cores) over the window."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        wall = asyncio.get_running_loop().time() - self._t0
        usage = {
            name: Usage(
                cpu_percent=round(cpu_percent(_tree_cpu(proc) - self._cpu0[name], wall), 1),
                rss_peak_mb=round(self._peak.get(name, 0) / 2**20, 1),
                cpu_s=round(_tree_cpu(proc) - self._cpu0[name], 3),
            )
            for name, proc in self._procs.items()
        }
        before, after = self._machine0, psutil.cpu_times()
        busy = sum(after) - sum(before) - (after.idle - before.idle)
        elapsed = sum(after) - sum(before)
        return usage, round(100 * busy / elapsed, 1) if elapsed > 0 else 0.0


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def uptime_line() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    return ""


def machine() -> dict[str, object]:
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu_model": cpu_model or platform.processor(),
        "logical_cores": psutil.cpu_count(logical=True),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
