"""`--profile`: py-spy samples the services during the throughput phase; the top frames go into the report.

py-spy attaches from outside (ptrace), so the services run unchanged. Its collapsed-stack output is summarized
here (pure) into the frames that hold the most samples, by themselves (self) and with their callees (total).
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections import Counter
from pathlib import Path


def parse_collapsed(text: str) -> list[tuple[list[str], int]]:
    """`frame;frame;…;leaf count` lines → (frames root first, samples)."""
    stacks = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def top_frames(stacks: list[tuple[list[str], int]], limit: int = 12) -> dict[str, list[tuple[str, float]]]:
    """The frames with the largest share of samples: `self` (the leaf) and `total` (anywhere in the stack)."""
    total = sum(n for _, n in stacks) or 1
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for frames, n in stacks:
        if not frames:
            continue
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    return {
        "self": [(f, round(100 * n / total, 1)) for f, n in own.most_common(limit)],
        "total": [(f, round(100 * n / total, 1)) for f, n in inclusive.most_common(limit)],
    }


class Profiler:
    def __init__(self, pids: dict[str, int], out_dir: Path) -> None:
        self._pids = pids
        self._out = out_dir
        self._procs: dict[str, asyncio.subprocess.Process] = {}

    async def start(self, duration_s: int) -> None:
        beside = Path(sys.executable).with_name("py-spy")
        exe = str(beside) if beside.exists() else shutil.which("py-spy")
        if exe is None:
            raise RuntimeError("py-spy is not installed: pip install -e './bench[profile]'")
        self._out.mkdir(parents=True, exist_ok=True)
        for name, pid in self._pids.items():
            self._procs[name] = await asyncio.create_subprocess_exec(
                exe,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(duration_s),
                "--rate",
                "200",
                "--format",
                "raw",
                "--nonblocking",
                "--output",
                str(self._out / f"{name}.txt"),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )

    async def finish(self) -> dict[str, dict[str, list[tuple[str, float]]]]:
        summary = {}
        for name, proc in self._procs.items():
            await proc.wait()
            path = self._out / f"{name}.txt"
            if path.exists():
                summary[name] = top_frames(parse_collapsed(path.read_text(errors="replace")))
        return summary
